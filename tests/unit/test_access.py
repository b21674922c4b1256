"""Who may add to a ticket: requester, participants, organisation, agents."""

import pytest

from gateway.domain.access import AccessPolicy, Standing
from gateway.notify.render import human_size

POLICY = AccessPolicy.build(
    agents=["@vtm.example", "freelancer@gmail.com"],
    organisations=[["acme.nl", "acme-group.com"]],
    same_domain=True,
)


@pytest.mark.parametrize(
    ("sender", "requester", "participants", "standing"),
    [
        ("jan@acme.nl", "jan@acme.nl", [], Standing.REQUESTER),
        ("piet@other.example", "jan@acme.nl", ["piet@other.example"], Standing.PARTICIPANT),
        ("anna@vtm.example", "jan@acme.nl", [], Standing.AGENT),
        ("freelancer@gmail.com", "jan@acme.nl", [], Standing.AGENT),
        ("kees@acme.nl", "jan@acme.nl", [], Standing.ORGANISATION),
        ("kees@acme-group.com", "jan@acme.nl", [], Standing.ORGANISATION),
        ("jan@acme.nl", "kees@acme-group.com", [], Standing.ORGANISATION),
        ("someone@gmail.com", "jan@gmail.com", [], None),
        ("mallory@evil.example", "jan@acme.nl", [], None),
        ("mallory@sub.acme.nl", "jan@acme.nl", [], None),
        ("other@gmail.com", "freelancer@gmail.com", [], None),
    ],
)
def test_standing_names_why_a_sender_may_write_or_none_for_a_stranger(
    sender: str, requester: str, participants: list[str], standing: Standing | None
) -> None:
    assert POLICY.standing(sender, requester, participants) == standing


def test_without_same_domain_only_configured_organisations_count() -> None:
    policy = AccessPolicy.build([], [["acme.nl", "acme-group.com"]], same_domain=False)
    assert policy.standing("kees@acme.nl", "jan@acme.nl", []) is Standing.ORGANISATION
    policy = AccessPolicy.build([], [], same_domain=False)
    assert policy.standing("kees@acme.nl", "jan@acme.nl", []) is None


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KB"), (10240, "10 KB"),
     (26214400, "25 MB"), (3 * 1024**3, "3.0 GB")],
)  # fmt: skip
def test_sizes_are_shown_as_mail_clients_show_them(size: int, shown: str) -> None:
    assert human_size(size) == shown
