"""Mail the desk must record but never answer: our own loop, auto-replies, bounces."""

from __future__ import annotations

from gateway.mail.parse import ParsedMail

LOOP_HEADER = "X-Ticket-Gateway-Loop"

_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_BOUNCE_LOCALPARTS = {"mailer-daemon", "postmaster"}


def ignore_reason(mail: ParsedMail, desk_addresses: set[str], loop_token: str) -> str | None:
    """Why this mail must not be answered or change a ticket, or None when it may."""
    if mail.headers.get(LOOP_HEADER.lower(), "").lower() == loop_token.lower():
        return "own_loop"
    if mail.sender in desk_addresses:
        return "from_desk_address"
    if mail.content_type == "multipart/report" or (
        mail.sender.split("@", 1)[0] in _BOUNCE_LOCALPARTS
    ):
        return "bounce"
    if mail.headers.get("return-path", None) == "<>":
        return "empty_return_path"
    auto = mail.headers.get("auto-submitted", "no").lower()
    if auto.split(";", 1)[0].strip() != "no":
        return "auto_submitted"
    if mail.headers.get("precedence", "").lower() in _BULK_PRECEDENCE:
        return "bulk_precedence"
    if "x-autoreply" in mail.headers or "x-autorespond" in mail.headers:
        return "auto_reply_header"
    return None
