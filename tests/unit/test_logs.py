"""Log formats and the message context, without I/O."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from gateway import logs


def record(message: str, *args: object, exc: bool = False, **extra: str) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("kapot")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args, exc_info)
    made.created, made.msecs = 1772443800.25, 250.0  # 2026-03-02 09:30:00.250 UTC
    for key, value in extra.items():
        setattr(made, key, value)
    logs.ContextFilter().filter(made)
    return made


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("VTM-2026-000001", "VTM-2026-000001"),
        ("abc@klant.example", "abc@klant.example"),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nnext", '"line\\nnext"'),
        ("bell\x07", '"bell\\x07"'),
        ("één", "één"),
    ],
)
def test_logfmt_values_are_bare_only_when_they_can_be(value: str, written: str) -> None:
    assert logs.logfmt_value(value) == written


def test_keyvalue_line_has_the_fields_in_order_and_the_traceback_on_it() -> None:
    with logs.message_context(message_id="m1@klant.example", source="imap:desk:7"):
        logs.bind(ref="VTM-2026-000001")
        line = logs.KeyValueFormatter().format(record("sent %s", "it", exc=True))
    assert line.startswith(
        'ts=2026-03-02T09:30:00.250Z level=warning logger=gateway.test msg="sent it" '
        'ref=VTM-2026-000001 message_id=m1@klant.example source=imap:desk:7 exc="Traceback'
    )
    assert "\n" not in line and "ValueError: kapot" in line


def test_json_line_is_one_object_with_the_context() -> None:
    with logs.message_context(message_id="m1@klant.example"):
        line = logs.JsonFormatter().format(record('quoted "%s"', "x", exc=True))
    event = json.loads(line)
    assert "\n" not in line
    assert event["msg"] == 'quoted "x"'
    assert (event["level"], event["logger"], event["message_id"]) == (
        "warning",
        "gateway.test",
        "m1@klant.example",
    )
    assert "ref" not in event and event["exc"].startswith("Traceback")


def test_text_adds_only_the_context_the_message_does_not_name() -> None:
    with logs.message_context(message_id="m1@x", ref="VTM-2026-000001"):
        line = logs.TextFormatter().format(record("created ref=VTM-2026-000001 message_id=m1@x"))
        other = logs.TextFormatter().format(record("retrying"))
    assert line.endswith("WARNING gateway.test: created ref=VTM-2026-000001 message_id=m1@x")
    assert other.endswith("WARNING gateway.test: retrying ref=VTM-2026-000001 message_id=m1@x")


def test_fields_given_with_extra_win_over_the_context() -> None:
    with logs.message_context(ref="VTM-2026-000001"):
        made = record("sent", ref="VTM-2026-000009")
    assert made.ref == "VTM-2026-000009"  # type: ignore[attr-defined]


def test_context_ends_with_its_block_whatever_was_bound_inside() -> None:
    with logs.message_context(source="deliver"):
        logs.bind(ref="VTM-2026-000001", message_id=None)
        with logs.message_context(message_id="inner@x"):
            assert logs.current() == {
                "source": "deliver",
                "ref": "VTM-2026-000001",
                "message_id": "inner@x",
            }
        assert logs.current() == {"source": "deliver", "ref": "VTM-2026-000001"}
    assert logs.current() == {}


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b"From: a@b\r\nMessage-ID: <abc@klant.example>\r\n\r\nbody", "abc@klant.example"),
        (b"message-id:\r\n <folded@x>\r\nSubject: s\r\n\r\n", "folded@x"),
        (b"Subject: s\n\nMessage-ID: <in-body@x>\n", None),  # the body is not the head
        (b"Subject: geen id\r\n\r\n", None),
        (b"Message-Id: bare@x\r\n\r\n", "bare@x"),
    ],
)
def test_the_message_id_is_read_from_the_head_only(raw: bytes, found: str | None) -> None:
    assert logs.header_message_id(raw) == found
