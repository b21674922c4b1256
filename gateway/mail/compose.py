"""Outgoing notifications as RFC 5322 messages (text + HTML alternative)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from gateway.mail.classify import LOOP_HEADER
from gateway.mail.parse import one_line


def new_message_id(domain: str, reference: str | None = None) -> str:
    """A fresh Message-ID (without angle brackets) in our own domain."""
    token = secrets.token_hex(10)
    return f"{reference}.{token}@{domain}" if reference else f"{token}@{domain}"


@dataclass(frozen=True)
class OutgoingMail:
    sender: str
    sender_name: str
    to: str
    reply_to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: datetime
    loop_token: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str = "auto-replied"


def _address(addr: str, name: str = "") -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=one_line(name), username=local, domain=domain)


def build_message(mail: OutgoingMail) -> EmailMessage:
    """The message to send; every value from outside is folded to one line first."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(mail.sender, mail.sender_name)
    msg["To"] = _address(mail.to)
    msg["Reply-To"] = _address(mail.reply_to, mail.sender_name)
    msg["Subject"] = one_line(mail.subject)
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = f"<{mail.message_id}>"
    if mail.in_reply_to:
        msg["In-Reply-To"] = f"<{mail.in_reply_to}>"
    if mail.references:
        msg["References"] = " ".join(f"<{mid}>" for mid in mail.references)
    msg["Auto-Submitted"] = mail.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = mail.loop_token
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    return msg
