"""Hostile input: mutated and truncated mail never breaks the parser in an unexpected way."""

from hypothesis import HealthCheck, given, settings

from gateway.mail.parse import ParsedMail, UnparseableMail, parse_mail
from tests.support.mails import make_mail
from tests.support.mutations import mutated_mail

SAMPLES = [
    make_mail(),
    make_mail(html="<p>Zie <a href='https://x.example'>dit</a></p>", cc="a@b.example"),
    make_mail(sender="=?utf-8?b?SsO2cmc=?= <j@k.example>", subject="=?iso-8859-1?q?caf=E9?="),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_mail(SAMPLES, most=8))
def test_mutated_mail_parses_or_is_refused_as_unparseable(raw: bytes) -> None:
    try:
        mail = parse_mail(raw)
    except UnparseableMail:
        return
    assert isinstance(mail, ParsedMail)
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "@" in mail.sender
