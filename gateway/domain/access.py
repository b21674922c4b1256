"""Who may write to a ticket. A reference in a subject is not a key."""

from __future__ import annotations

from collections.abc import Collection

# Addresses at these domains belong to private persons, not to one organisation, so a
# shared domain says nothing about who may write to a ticket.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "hotmail.com", "hotmail.nl", "outlook.com",
        "outlook.nl", "live.com", "live.nl", "msn.com", "yahoo.com", "icloud.com",
        "me.com", "kpnmail.nl", "ziggo.nl", "home.nl", "planet.nl", "hetnet.nl",
        "xs4all.nl", "telfort.nl", "casema.nl", "chello.nl", "proton.me", "protonmail.com",
    }
)  # fmt: skip


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def may_write(sender: str, requester: str, participants: Collection[str]) -> bool:
    """Requester, participants and the requester's organisation (same, non-public domain)."""
    if sender == requester or sender in participants:
        return True
    domain = domain_of(sender)
    return domain == domain_of(requester) and domain not in PUBLIC_MAIL_DOMAINS
