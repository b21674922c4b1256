"""Priority of incidents: impact x urgency (PROCESS.md, 1 = most urgent)."""

from __future__ import annotations

from gateway.domain.model import Impact, Urgency

PRIORITY_MATRIX: dict[tuple[Impact, Urgency], int] = {
    (Impact.COMPANY, Urgency.HIGH): 1,
    (Impact.COMPANY, Urgency.MEDIUM): 2,
    (Impact.COMPANY, Urgency.LOW): 3,
    (Impact.DEPARTMENT, Urgency.HIGH): 2,
    (Impact.DEPARTMENT, Urgency.MEDIUM): 3,
    (Impact.DEPARTMENT, Urgency.LOW): 4,
    (Impact.INDIVIDUAL, Urgency.HIGH): 3,
    (Impact.INDIVIDUAL, Urgency.MEDIUM): 4,
    (Impact.INDIVIDUAL, Urgency.LOW): 5,
}

PRIORITIES = range(1, 6)


def priority_for(impact: Impact | str, urgency: Urgency | str) -> int:
    """The matrix priority for an impact and an urgency."""
    return PRIORITY_MATRIX[(Impact(impact), Urgency(urgency))]
