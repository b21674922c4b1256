"""Who may write to a ticket. A reference in a subject is not a key."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

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


class Standing(StrEnum):
    """Why someone may write to a ticket."""

    REQUESTER = "requester"
    PARTICIPANT = "participant"
    ORGANISATION = "organisation"
    AGENT = "agent"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


@dataclass(frozen=True)
class AccessPolicy:
    """Agents, customer organisations (groups of domains) and the same-domain rule."""

    agents: frozenset[str] = frozenset()  # addresses, and "@domain" for whole domains
    organisations: tuple[frozenset[str], ...] = ()
    same_domain: bool = True

    @classmethod
    def build(
        cls, agents: Iterable[str], organisations: Iterable[Iterable[str]], same_domain: bool
    ) -> AccessPolicy:
        return cls(
            agents=frozenset(a.lower() for a in agents),
            organisations=tuple(frozenset(d.lower() for d in group) for group in organisations),
            same_domain=same_domain,
        )

    def is_agent(self, address: str) -> bool:
        return address in self.agents or f"@{domain_of(address)}" in self.agents

    def same_organisation(self, one: str, other: str) -> bool:
        mine, theirs = domain_of(one), domain_of(other)
        if mine == theirs and self.same_domain and mine not in PUBLIC_MAIL_DOMAINS:
            return True
        return any(mine in group and theirs in group for group in self.organisations)

    def standing(
        self, sender: str, requester: str, participants: Collection[str]
    ) -> Standing | None:
        """Why `sender` may add to the ticket, or None: a stranger to it."""
        if sender == requester:
            return Standing.REQUESTER
        if sender in participants:
            return Standing.PARTICIPANT
        if self.is_agent(sender):
            return Standing.AGENT
        if self.same_organisation(sender, requester):
            return Standing.ORGANISATION
        return None
