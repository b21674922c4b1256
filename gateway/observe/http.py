"""A small HTTP/1.1 server on asyncio for GET /healthz and GET /metrics.

One request per connection (Connection: close), no request bodies, a bounded request
head and time to send it: enough for Prometheus and a health probe, nothing to
configure. prometheus_client's own servers run in threads (or need aiohttp/ASGI);
this one runs on the daemon's event loop, where the database figures are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

HEAD_SECONDS = 10.0  # the client's time to send the request line and headers
MAX_HEADERS = 100
MAX_LINE = 8192


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        body = (json.dumps(value, indent=2, sort_keys=False) + "\n").encode()
        return cls(status, body, "application/json")

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Response:
        return cls(status, (text + "\n").encode(), headers=headers)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    pass


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request line or header too long") from exc
    except asyncio.IncompleteReadError as exc:
        raise BadRequest("connection closed in the request head") from exc
    return line.rstrip(b"\r\n")


async def read_request(reader: asyncio.StreamReader) -> Request:
    request_line = (await _read_line(reader)).decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not an HTTP/1.x request line: {request_line[:80]!r}")
    method, target, _version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = (await _read_line(reader)).decode("latin-1")
        if not line:
            break
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest(f"not a header: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest("too many headers")
    path = target.split("?", 1)[0].split("#", 1)[0]
    return Request(method, path, headers)


class HttpEndpoint:
    """Serves `routes` (path -> handler) for GET and HEAD; 404 and 405 otherwise."""

    def __init__(self, host: str, port: int, routes: dict[str, Handler]) -> None:
        self.host = host
        self.port = port  # the bound port once started (for port 0)
        self._routes = routes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_LINE, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end the connections in hand."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            response, head_only = await self._respond(reader)
            await self._write(writer, response, head_only)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a bug here must not take the daemon down
            log.exception("http: error answering a request")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        try:
            async with asyncio.timeout(HEAD_SECONDS):
                request = await read_request(reader)
        except (BadRequest, TimeoutError) as exc:
            return Response.text(400, f"bad request: {exc or 'too slow'}"), False
        handler = self._routes.get(request.path)
        if handler is None:
            return Response.text(404, f"not found: {request.path}"), request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "method not allowed", Allow="GET, HEAD"), False
        return await handler(request), request.method == "HEAD"

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        reason = HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)
        await writer.drain()
