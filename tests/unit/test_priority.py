import pytest

from gateway.domain.model import Impact, Urgency
from gateway.domain.priority import priority_for

# PROCESS.md, row by row: company, department, individual x high, medium, low.
EXPECTED = {
    ("company", "high"): 1, ("company", "medium"): 2, ("company", "low"): 3,
    ("department", "high"): 2, ("department", "medium"): 3, ("department", "low"): 4,
    ("individual", "high"): 3, ("individual", "medium"): 4, ("individual", "low"): 5,
}  # fmt: skip


@pytest.mark.parametrize(("impact", "urgency"), list(EXPECTED))
def test_priority_matrix_cell(impact: str, urgency: str) -> None:
    assert priority_for(Impact(impact), Urgency(urgency)) == EXPECTED[(impact, urgency)]


def test_matrix_covers_every_combination_once() -> None:
    assert {(i.value, u.value) for i in Impact for u in Urgency} == set(EXPECTED)


def test_unknown_impact_is_refused() -> None:
    with pytest.raises(ValueError):
        priority_for("planet", "high")
