"""Hypothesis strategies that damage e-mail the way the world does, for fuzz tests."""

from __future__ import annotations

import re

from hypothesis import strategies as st

_BOUNDARY = re.compile(rb'(?i)boundary="?([^";\r\n]+)')
HEADER_JUNK = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\t",
    b":",
    b"\xff",
    b"\x80\x81",
    b"\xc3",
    b"<",
    b"@",
    b"=?utf-8?b?////?=",
    b"=?x-unknown?q?=FF=00?=",
    b"=?utf-8?q?",
]


def _header_lines(raw: bytes) -> tuple[list[bytes], int]:
    """The lines, and how many of them (from the top) are the header section."""
    lines = raw.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line in (b"\r\n", b"\n", b"\r")), len(lines))
    return lines, end


@st.composite
def mutated_mail(draw: st.DrawFn, bases: list[bytes], most: int = 6) -> bytes:
    """One of `bases` with up to `most` mutations: truncated, bytes flipped, inserted or
    deleted, header lines doubled or dropped, junk in the headers, broken boundaries."""
    raw = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, most))):
        action = draw(
            st.sampled_from(
                [
                    "truncate",
                    "flip",
                    "insert",
                    "delete",
                    "dup_header",
                    "drop_header",
                    "header_junk",
                    "boundary",
                ]
            )
        )
        position = draw(st.integers(0, max(0, len(raw) - 1)))
        lines, end = _header_lines(bytes(raw))
        if action == "truncate":
            del raw[position:]
        elif action == "flip" and raw:
            raw[position] = draw(st.integers(0, 255))
        elif action == "insert":
            raw[position:position] = draw(st.binary(min_size=1, max_size=20))
        elif action == "delete":
            del raw[position : position + draw(st.integers(1, 40))]
        elif action in ("dup_header", "drop_header") and end:
            line = draw(st.integers(0, end - 1))
            if action == "dup_header":
                lines.insert(draw(st.integers(0, end)), lines[line])
            else:
                del lines[line]
            raw = bytearray(b"".join(lines))
        elif action == "header_junk":
            header_size = len(b"".join(lines[:end]))
            at = draw(st.integers(0, header_size))
            raw[at:at] = draw(st.sampled_from(HEADER_JUNK))
        elif action == "boundary":
            garbage = draw(
                st.sampled_from([b"", b'"', b"--", b" ", b"\x00\xff", b"\r\n"])
                | st.binary(min_size=1, max_size=12)
            )
            found = _BOUNDARY.search(raw)
            if found is None:
                raw[0:0] = b'Content-Type: multipart/mixed; boundary="' + garbage + b'"\r\n'
            elif draw(st.booleans()):  # the declared boundary no longer matches the body
                raw[found.start(1) : found.end(1)] = garbage
            else:  # the body's delimiter lines no longer match the declaration
                token = found.group(1)
                head, body = bytes(raw[: found.end()]), bytes(raw[found.end() :])
                raw = bytearray(head + body.replace(token, garbage))
    return bytes(raw)
