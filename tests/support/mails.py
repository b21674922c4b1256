"""Build raw test messages the way common mail clients write them."""

from __future__ import annotations

import itertools
from email.message import EmailMessage
from email.policy import SMTP

_counter = itertools.count(1)


def make_mail(
    *,
    sender: str = "Jan de Vries <jan@klant.example>",
    to: str = "business@vtm.example",
    subject: str = "Storing glasvezel Leiden",
    body: str = "Onze verbinding ligt eruit sinds 9:00.\n",
    cc: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 09:00:00 +0100"
    msg["Message-ID"] = f"<{message_id or f'm{next(_counter)}@klant.example'}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()
