"""SPF/DKIM/DMARC per article, from trusted Authentication-Results headers only."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.integration.helpers import detail
from tests.support.mails import make_mail

REF = "VTM-2026-000001"
OURS = (
    "mx.vtm.example 1; spf=pass smtp.mailfrom=klant.example; "
    "dkim=pass header.d=klant.example header.s=sel1; dmarc=pass header.from=klant.example"
)
FORGED = "mx.vtm.example; spf=pass smtp.mailfrom=bank.example; dkim=pass header.d=bank.example"


async def test_trusted_results_are_kept_on_the_article(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(
        sections={"security": {"trusted_authserv_ids": ["MX.vtm.example"]}}
    )
    await gateway.pipeline.ingest(make_mail(headers={"Authentication-Results": OURS}), "test")
    auth = (await detail(gateway, REF))["articles"][0]["authentication"]
    assert auth["authserv_id"] == "mx.vtm.example"
    assert (auth["spf"], auth["dkim"], auth["dmarc"]) == ("pass", "pass", "pass")
    assert auth["dkim_domains"] == ["klant.example"]


async def test_a_header_below_an_untrusted_hop_cannot_vouch_for_the_mail(
    make_gateway: GatewayFactory,
) -> None:
    """The sender wrote a header with our id into the mail before it reached our MTA;
    our MTA's own header sits above it and says the truth."""
    gateway = await make_gateway(
        sections={"security": {"trusted_authserv_ids": ["mx.vtm.example"]}}
    )
    raw = make_mail(headers={"Authentication-Results": FORGED})
    real = (
        b"Authentication-Results: mx.vtm.example; spf=fail smtp.mailfrom=bank.example\r\n"
        b"Received: from phish.example by mx.vtm.example; Mon, 2 Mar 2026 09:00:00 +0100\r\n"
    )
    await gateway.pipeline.ingest(real + raw, "test")
    auth = (await detail(gateway, REF))["articles"][0]["authentication"]
    assert (auth["spf"], auth["dkim"]) == ("fail", None)


async def test_without_trusted_ids_no_results_are_believed(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(headers={"Authentication-Results": OURS}), "test")
    assert (await detail(gateway, REF))["articles"][0]["authentication"] is None
