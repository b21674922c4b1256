"""Attachments: kept once per content, listed and saved from the CLI, limits told."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import func, select

from gateway.store.models import AttachmentBlob
from tests.conftest import GatewayFactory
from tests.integration.helpers import detail, outbox_rows
from tests.integration.test_cli import cli, cli_json, config, ingest

__all__ = ["config"]  # the fixture

REF = "VTM-2026-000001"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


def with_attachments(
    *parts: tuple[str, str, bytes], subject: str = "Offerte", message_id: str = "a@klant.example"
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Jan de Vries <jan@klant.example>"
    msg["To"] = "business@vtm.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    msg.set_content("Zie bijlage.\n")
    for filename, ctype, data in parts:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


async def blob_count(gateway) -> int:  # type: ignore[no-untyped-def]
    async with gateway.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AttachmentBlob)) or 0)


async def test_attachments_are_kept_once_per_content_with_name_type_and_size(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(
        with_attachments(("offerte-café.pdf", "application/pdf", PDF)), "t"
    )
    await gateway.pipeline.ingest(
        with_attachments(
            ("kopie.pdf", "application/pdf", PDF),
            subject=f"Re: [{REF}] Offerte",
            message_id="b@klant.example",
        ),
        "t",
    )
    ticket = await detail(gateway, REF)
    first, second = (a["attachments"] for a in ticket["articles"])
    assert [(x["filename"], x["content_type"], x["size"], x["kept"]) for x in first] == [
        ("offerte-café.pdf", "application/pdf", len(PDF), True)
    ]
    assert second[0]["sha256"] == first[0]["sha256"]
    assert await blob_count(gateway) == 1


async def test_an_attachment_over_the_limit_is_recorded_and_the_sender_told(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(sections={"attachments": {"max_attachment_bytes": 1000}})
    await gateway.pipeline.ingest(
        with_attachments(("groot.pdf", "application/pdf", PDF), ("klein.txt", "text/plain", b"ok")),
        "t",
    )
    ticket = await detail(gateway, REF)
    big, small = ticket["articles"][0]["attachments"]
    assert (big["filename"], big["kept"], big["size"]) == ("groot.pdf", False, len(PDF))
    assert "larger than 1000 bytes" in big["refused"]
    assert small["kept"]
    assert await blob_count(gateway) == 1
    events = [(r.event, r.recipient) for r in await outbox_rows(gateway)]
    assert events == [("created", "jan@klant.example"), ("attachment_refused", "jan@klant.example")]
    refused = (await outbox_rows(gateway))[-1]
    assert "groot.pdf (10 KB)" in refused.body_text
    assert "klein.txt" not in refused.body_text


async def test_the_message_limit_counts_attachments_together(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(
        sections={"attachments": {"max_message_attachment_bytes": len(PDF) + 10}}
    )
    await gateway.pipeline.ingest(
        with_attachments(
            ("a.pdf", "application/pdf", PDF), ("b.bin", "application/octet-stream", PDF[:-1])
        ),
        "t",
    )
    kept = [a["kept"] for a in (await detail(gateway, REF))["articles"][0]["attachments"]]
    assert kept == [True, False]


def test_the_cli_lists_and_saves_attachments(config: Path, db_url: str, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, with_attachments(("offerte.pdf", "application/pdf", PDF)))
    (row,) = cli_json(config, "ticket", "attachments", REF)
    assert (row["filename"], row["size"], row["kept"]) == ("offerte.pdf", len(PDF), True)
    out = tmp_path / "out"
    out.mkdir()
    saved = cli(config, "attachment", "save", str(row["id"]), str(out))
    assert saved.exit_code == 0, saved.output
    assert (out / "offerte.pdf").read_bytes() == PDF
    again = cli(config, "attachment", "save", str(row["id"]), str(out))
    assert again.exit_code != 0 and "exists; use --force" in again.output
    assert cli(config, "attachment", "save", "--force", str(row["id"]), str(out)).exit_code == 0
    missing = cli(config, "attachment", "save", "999", str(out / "x"))
    assert missing.exit_code != 0 and "no attachment 999" in missing.output


async def test_signatures_of_signed_mail_are_not_kept_as_attachments(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(
        with_attachments(
            ("smime.p7s", "application/pkcs7-signature", b"0\x82sig"),
            ("offerte.pdf", "application/pdf", PDF),
        ),
        "t",
    )
    names = [a["filename"] for a in (await detail(gateway, REF))["articles"][0]["attachments"]]
    assert names == ["offerte.pdf"]
