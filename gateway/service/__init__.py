"""The service layer: every rule that changes a ticket lives here, once.

Mail intake, the CLI and (later) the web portal call these functions with an open
session; the caller owns the transaction. Notifications are only ever written to the
outbox (notices.py), never sent.
"""

from gateway.service.agents import (
    agent_reply,
    change_status,
    override_priority,
    set_category,
    set_impact_urgency,
    set_team,
)
from gateway.service.customers import Received, match_ticket, receive_customer_mail
from gateway.service.desk import Desk, TicketError, UnknownTicket
from gateway.service.tickets import get_ticket, next_reference, open_ticket, participants_of

__all__ = [
    "Desk",
    "Received",
    "TicketError",
    "UnknownTicket",
    "agent_reply",
    "change_status",
    "get_ticket",
    "match_ticket",
    "next_reference",
    "open_ticket",
    "override_priority",
    "participants_of",
    "receive_customer_mail",
    "set_category",
    "set_impact_urgency",
    "set_team",
]
