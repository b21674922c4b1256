"""Hostile subjects and names never reach the headers of our notifications."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.support.sink import SmtpSink

# Encoded words that decode to CR LF followed by a header of the attacker's choosing,
# in the subject and in the display name.
HOSTILE = (
    b"From: =?utf-8?q?Jan=0D=0ABcc=3A_victim=40else.example?= <jan@klant.example>\r\n"
    b"To: business@vtm.example\r\n"
    b"Subject: =?utf-8?q?Storing_<script>alert(1)</script>=0D=0ABcc=3A_victim=40else.example"
    b"=0D=0A=0D=0Anep?=\r\n"
    b"Message-ID: <hostile1@klant.example>\r\n"
    b"Date: Mon, 02 Mar 2026 09:00:00 +0100\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hallo <script>alert(1)</script></p>\r\n"
)


async def test_encoded_line_breaks_in_subject_and_name_inject_no_header(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway()
    outcome = await gateway.pipeline.ingest(HOSTILE, "t")
    assert outcome.kind == "ticket"
    await gateway.relay.send_due()
    (sent,) = await sink.wait_for(1)
    assert sent.recipients == ["jan@klant.example"]
    header_block = sent.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [
        line.split(":", 1)[0].lower() for line in header_block.splitlines() if line[:1].strip()
    ]
    assert "bcc" not in names and names.count("to") == 1 and "cc" not in names
    subject = str(sent.message["Subject"])
    assert "Storing" in subject and "\r" not in subject and "\n" not in subject
    html = next(p for p in sent.message.walk() if p.get_content_type() == "text/html")
    assert "&lt;script&gt;" in html.get_content()  # the subject is shown, escaped
    assert "<script>" not in html.get_content()
