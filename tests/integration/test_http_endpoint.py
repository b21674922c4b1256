"""The HTTP endpoint as a client sees it: status codes, HEAD, bad requests, OpenMetrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.observe.http import HttpEndpoint, Request, Response
from gateway.observe.metrics import Metrics
from tests.support.http import get, http_request


async def hello(_request: Request) -> Response:
    return Response.json(200, {"hello": "world"})


@pytest.fixture
async def server() -> AsyncIterator[HttpEndpoint]:
    metrics = Metrics()  # a registry of its own, with no daemon behind it

    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept", ""))
        return Response(200, body, content_type)

    endpoint = HttpEndpoint("127.0.0.1", 0, {"/hello": hello, "/metrics": scrape})
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


async def test_get_answers_with_length_and_closes(server: HttpEndpoint) -> None:
    reply = await get(server.port, "/hello?verbose=1")
    assert reply.status == 200
    assert reply.json() == {"hello": "world"}
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["connection"] == "close"


async def test_unknown_path_is_404_and_other_methods_405(server: HttpEndpoint) -> None:
    assert (await get(server.port, "/nothing")).status == 404
    refused = await http_request(server.port, "/hello", method="POST")
    assert (refused.status, refused.headers["allow"]) == (405, "GET, HEAD")


async def test_head_has_the_headers_without_the_body(server: HttpEndpoint) -> None:
    reply = await http_request(server.port, "/hello", method="HEAD")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["content-length"]) > 0


async def test_garbage_is_a_bad_request(server: HttpEndpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"HELLO THERE\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_metrics_speak_openmetrics_when_asked(server: HttpEndpoint) -> None:
    plain = await get(server.port, "/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert b"ticket_gateway_processing_seconds_count 0.0" in plain.body
    open_metrics = await http_request(
        server.port, "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.body.rstrip().endswith(b"# EOF")


async def test_stop_ends_a_connection_that_never_sends(server: HttpEndpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await server.stop()  # does not wait for the silent client's HEAD_SECONDS
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
