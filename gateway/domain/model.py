"""The vocabulary of the process: statuses, categories, impact and urgency."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    AWAITING_CUSTOMER = "awaiting_customer"
    ON_HOLD = "on_hold"
    SCHEDULED = "scheduled"
    AWAITING_ACCEPTANCE = "awaiting_acceptance"
    CLOSED = "closed"


class Category(StrEnum):
    INCIDENT = "incident"
    SERVICE_REQUEST = "service_request"
    CHANGE = "change"


class Impact(StrEnum):
    COMPANY = "company"
    DEPARTMENT = "department"
    INDIVIDUAL = "individual"


class Urgency(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


STATUS_LABELS: dict[str, dict[Status, str]] = {
    "nl": {
        Status.OPEN: "Open",
        Status.IN_PROGRESS: "Onderhanden",
        Status.AWAITING_CUSTOMER: "In afwachting antwoord",
        Status.ON_HOLD: "On hold",
        Status.SCHEDULED: "Gepland",
        Status.AWAITING_ACCEPTANCE: "In afwachting van acceptatie",
        Status.CLOSED: "Gesloten",
    },
    "en": {
        Status.OPEN: "Open",
        Status.IN_PROGRESS: "In progress",
        Status.AWAITING_CUSTOMER: "Awaiting your answer",
        Status.ON_HOLD: "On hold",
        Status.SCHEDULED: "Scheduled",
        Status.AWAITING_ACCEPTANCE: "Awaiting your acceptance",
        Status.CLOSED: "Closed",
    },
}


def status_label(status: Status | str, language: str) -> str:
    """The customer-facing label of a status in the given language (nl if unknown)."""
    labels = STATUS_LABELS.get(language, STATUS_LABELS["nl"])
    return labels[Status(status)]
