"""Hostile input: mutated and truncated mail never breaks the parser in an unexpected way."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mail.parse import ParsedMail, UnparseableMail, parse_mail
from tests.support.mails import make_mail

SAMPLES = [
    make_mail(),
    make_mail(html="<p>Zie <a href='https://x.example'>dit</a></p>", cc="a@b.example"),
    make_mail(sender="=?utf-8?b?SsO2cmc=?= <j@k.example>", subject="=?iso-8859-1?q?caf=E9?="),
]


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, max(0, len(raw) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and raw:
            raw[position] = draw(st.integers(0, 255))
        elif action == "insert":
            raw[position:position] = draw(st.binary(min_size=1, max_size=20))
        elif action == "delete":
            del raw[position : position + draw(st.integers(1, 40))]
        else:
            del raw[position:]
    return bytes(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_mail())
def test_mutated_mail_parses_or_is_refused_as_unparseable(raw: bytes) -> None:
    try:
        mail = parse_mail(raw)
    except UnparseableMail:
        return
    assert isinstance(mail, ParsedMail)
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "@" in mail.sender
