"""Quote and signature splitting on real-world reply shapes (tests/data/replies/): plain
text replies through `new_part`, HTML-only replies (NAME.eml) through `parse_mail`."""

from pathlib import Path

import pytest

from gateway.mail.parse import parse_mail
from gateway.mail.quotes import new_part

REPLIES = Path(__file__).resolve().parent.parent / "data" / "replies"
CASES = sorted(p.stem for p in REPLIES.glob("*.txt") if not p.stem.endswith(".expected"))
HTML_CASES = sorted(p.stem for p in REPLIES.glob("*.eml"))


def expected(name: str) -> str:
    return (REPLIES / f"{name}.expected.txt").read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("name", CASES)
def test_new_part_is_what_the_customer_wrote(name: str) -> None:
    text = (REPLIES / f"{name}.txt").read_text(encoding="utf-8")
    assert new_part(text) == expected(name)


@pytest.mark.parametrize("name", HTML_CASES)
def test_html_only_reply_new_text_is_what_the_customer_wrote(name: str) -> None:
    mail = parse_mail((REPLIES / f"{name}.eml").read_bytes())
    assert mail.content_type in ("text/html", "multipart/related")
    assert mail.new_text == expected(name)


@pytest.mark.parametrize("name", HTML_CASES)
def test_html_only_reply_text_keeps_the_whole_conversion(name: str) -> None:
    mail = parse_mail((REPLIES / f"{name}.eml").read_bytes())
    assert mail.text.startswith(mail.new_text.splitlines()[0])
    assert len(mail.text) >= len(mail.new_text)


def test_the_cases_cover_the_clients_we_promise() -> None:
    assert len(CASES) >= 8
    clients = ("outlook_html_nl", "outlook_web_html_en", "gmail_html_nl", "apple_mail_html_en")
    assert set(clients) <= set(HTML_CASES)


def test_html_reply_that_is_all_quote_gives_the_whole_text() -> None:
    mail = parse_mail((REPLIES / "gmail_html_forward_only.eml").read_bytes())
    assert mail.text_before_quote == ""
    assert mail.new_text == mail.text != ""


def test_quote_in_the_quoted_mail_does_not_hide_the_new_part() -> None:
    mail = parse_mail((REPLIES / "outlook_html_nl.eml").read_bytes())
    assert "Beste Jan de Vries" in mail.text
    assert "Beste Jan de Vries" not in mail.new_text


def test_a_hyphen_list_is_kept_not_taken_for_a_signature() -> None:
    text = "Hallo,\n\nGeprobeerd:\n- modem herstart\n- kabel vervangen\n\n-- \nJan\nKlant BV"
    assert new_part(text) == "Hallo,\n\nGeprobeerd:\n- modem herstart\n- kabel vervangen"


def test_empty_text_stays_empty() -> None:
    assert new_part("  \n") == ""
