"""The daemon's HTTP endpoint: GET /healthz and GET /metrics."""

from __future__ import annotations

from gateway.observe.health import check_health
from gateway.observe.http import HttpEndpoint, Request, Response
from gateway.observe.metrics import Metrics
from gateway.observe.sources import Observed


def build_endpoint(gateway: Observed, metrics: Metrics) -> HttpEndpoint | None:
    """The endpoint on `http.listen`, or None when that is empty (not started yet)."""
    address = gateway.settings.http.address
    if address is None:
        return None

    async def healthz(_request: Request) -> Response:
        health = await check_health(gateway)
        return Response.json(health.http_status, health.body)

    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept", ""))
        return Response(200, body, content_type)

    host, port = address
    return HttpEndpoint(host, port, {"/healthz": healthz, "/metrics": scrape})
