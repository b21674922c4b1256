"""The transition table: which status changes exist, and who may make them.

Every status change (a customer's mail, an agent on the CLI or by mail, a timer) is
checked here first; what is not in the table is refused with the reason. Derived from
PROCESS.md:

- a customer's mail answers (awaiting_customer -> in_progress), accepts or not
  (awaiting_acceptance -> closed / in_progress) and reopens (closed -> in_progress);
- agents move a ticket between the working statuses; nothing goes back to `open`;
- timers close for silence (awaiting_customer, awaiting_acceptance -> closed) and wake
  scheduled tickets (scheduled -> in_progress).

Pure data and functions.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.domain.model import Status


class Actor(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"  # timers


class InvalidTransition(ValueError):
    """A status change the process does not have."""


S = Status
_AGENT_TARGETS = (
    S.IN_PROGRESS, S.AWAITING_CUSTOMER, S.ON_HOLD, S.SCHEDULED, S.AWAITING_ACCEPTANCE, S.CLOSED,
)  # fmt: skip

# (from, to) -> who may, and why the transition exists.
TRANSITIONS: dict[tuple[Status, Status], tuple[frozenset[Actor], str]] = {}


def _allow(actors: set[Actor], frm: Status, to: Status, why: str) -> None:
    known, reason = TRANSITIONS.get((frm, to), (frozenset(), ""))
    TRANSITIONS[(frm, to)] = (known | actors, f"{reason}; {why}" if reason else why)


for _frm in Status:
    for _to in _AGENT_TARGETS:
        if _frm is not _to and _frm is not S.CLOSED:
            _allow({Actor.AGENT}, _frm, _to, "an agent works the ticket")
_allow({Actor.AGENT}, S.CLOSED, S.IN_PROGRESS, "an agent reopens it")
_allow({Actor.CUSTOMER}, S.AWAITING_CUSTOMER, S.IN_PROGRESS, "the customer answered")
_allow({Actor.CUSTOMER}, S.AWAITING_ACCEPTANCE, S.CLOSED, "the customer accepted")
_allow({Actor.CUSTOMER}, S.AWAITING_ACCEPTANCE, S.IN_PROGRESS, "the customer did not accept")
_allow({Actor.CUSTOMER}, S.CLOSED, S.IN_PROGRESS, "the customer reopened it in time")
_allow({Actor.SYSTEM}, S.AWAITING_CUSTOMER, S.CLOSED, "no answer after the reminder")
_allow({Actor.SYSTEM}, S.AWAITING_ACCEPTANCE, S.CLOSED, "accepted by silence")
_allow({Actor.SYSTEM}, S.SCHEDULED, S.IN_PROGRESS, "the scheduled date came")


def allowed_targets(frm: Status, actor: Actor) -> list[Status]:
    return [to for (f, to), (actors, _) in TRANSITIONS.items() if f is frm and actor in actors]


def check_transition(frm: Status, to: Status, actor: Actor) -> None:
    """Raise InvalidTransition unless `actor` may move a ticket from `frm` to `to`."""
    actors, _ = TRANSITIONS.get((frm, to), (frozenset(), ""))
    if actor in actors:
        return
    allowed = ", ".join(allowed_targets(frm, actor)) or "nothing"
    raise InvalidTransition(
        f"cannot go from {frm} to {to} ({actor}); allowed from {frm}: {allowed}"
    )


_INITIAL = {Actor.CUSTOMER: "C", Actor.AGENT: "A", Actor.SYSTEM: "T"}


def table_markdown() -> str:
    """The table as a Markdown matrix (A agent, C customer's mail, T timer), for the
    README; a test keeps the two equal."""
    targets = [s for s in Status if s is not S.OPEN]
    lines = [
        "| from \\ to | " + " | ".join(t.value for t in targets) + " |",
        "| --- |" + " :-: |" * len(targets),
    ]
    for frm in Status:
        cells = []
        for to in targets:
            actors, _ = TRANSITIONS.get((frm, to), (frozenset(), ""))
            cells.append(" ".join(_INITIAL[a] for a in Actor if a in actors) or "·")
        lines.append(f"| {frm.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
