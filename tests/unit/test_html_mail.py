"""HTML bodies become safe, readable text (tests/data/html/), and HTML-only replies know
where the quoted earlier mail starts."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mail.html import html_reply, html_to_text
from gateway.mail.parse import parse_mail
from tests.support.mails import make_mail

HTML = Path(__file__).resolve().parent.parent / "data" / "html"
CASES = sorted(p.stem for p in HTML.glob("*.html"))


def html_only(html: str) -> bytes:
    """A mail whose only body is `html`."""
    head = (
        "From: Jan de Vries <jan@klant.example>\r\nTo: noc@vtm.example\r\nSubject: Storing\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (head + html).encode()


@pytest.mark.parametrize("name", CASES)
def test_fixture_converts_to_what_a_reader_sees(name: str) -> None:
    html = (HTML / f"{name}.html").read_text(encoding="utf-8")
    expected = (HTML / f"{name}.expected.txt").read_text(encoding="utf-8").strip()
    assert html_to_text(html) == expected


def test_the_html_cases_cover_the_shapes_we_promise() -> None:
    assert len(CASES) >= 6


def test_link_whose_text_names_another_site_shows_its_real_target() -> None:
    html = '<a href="https://phish.example/x">https://bank.example</a>'
    assert html_to_text(html) == "https://bank.example (https://phish.example/x)"


def test_link_whose_text_is_its_target_is_not_repeated() -> None:
    assert html_to_text('<a href="https://www.vtm.example/">vtm.example</a>') == "vtm.example"


def test_javascript_and_mailto_links_keep_only_their_text() -> None:
    html = '<a href="javascript:alert(1)">klik</a> <a href="mailto:a@b.example">mail</a>'
    assert html_to_text(html) == "klik mail"


def test_br_breaks_lines_and_paragraphs_leave_one_blank_line() -> None:
    assert html_to_text("<p>a<br>b</p><p>c</p><br><br><br><p>d</p>") == "a\nb\n\nc\n\nd"


def test_gmail_divs_are_lines_and_an_empty_div_is_a_blank_line() -> None:
    html = '<div dir="ltr">Hoi,<div><br></div><div>regel 1</div><div>regel 2</div></div>'
    assert html_to_text(html) == "Hoi,\n\nregel 1\nregel 2"


def test_hidden_preheader_is_left_out() -> None:
    html = '<span style="display: none !important">Preheader</span><p>Inhoud</p>'
    assert html_to_text(html) == "Inhoud"


def test_unclosed_hidden_element_does_not_swallow_the_mail() -> None:
    assert html_to_text('<div style="display:none">alleen verborgen') == "alleen verborgen"


def test_nested_elements_inside_hidden_ones_stay_hidden() -> None:
    html = '<div style="display:none"><div>a</div><div>b</div></div><p>zichtbaar</p>'
    assert html_to_text(html) == "zichtbaar"


def test_zero_width_characters_and_soft_hyphens_are_removed() -> None:
    assert html_to_text("glas&shy;vezel&#8203; &zwnj;ok&#xFEFF;") == "glasvezel ok"


def test_html_only_mail_text_is_the_conversion() -> None:
    mail = parse_mail(html_only('<p>Zie <a href="https://x.example/s">status</a></p>'))
    assert mail.text == "Zie status (https://x.example/s)"
    assert mail.text_before_quote is None


def test_html_alternative_is_not_used_when_there_is_plain_text() -> None:
    mail = parse_mail(make_mail(body="Platte tekst\n", html="<p>HTML-tekst</p>"))
    assert mail.text == "Platte tekst"


def test_html_reply_without_quote_markup_has_no_cut() -> None:
    assert html_reply("<p>Nieuw bericht</p>").before_quote is None


def test_outlook_bordered_div_without_a_reply_header_is_not_a_quote() -> None:
    html = (
        "<p>Tekst</p><div style='border:none;border-top:solid #E1E1E1 1.0pt'>"
        "<p>Klant BV | Leiden</p></div>"
    )
    reply = html_reply(html)
    assert reply.before_quote is None
    assert reply.text == "Tekst\n\nKlant BV | Leiden"


def test_quote_marker_inside_hidden_markup_is_ignored() -> None:
    html = '<p>Nieuw</p><div style="display:none"><blockquote type="cite">x</blockquote></div>'
    assert html_reply(html).before_quote is None


@pytest.mark.parametrize(
    "marker",
    [
        '<div class="gmail_quote">',
        '<blockquote class="gmail_quote">',
        '<blockquote type="cite">',
        '<div class="moz-cite-prefix">',
        '<div id="divRplyFwdMsg" dir="ltr">',
        '<hr id="stopSpelling">',
        '<div id="yahoo_quoted_12345" class="yahoo_quoted">',
        '<div id="mail-editor-reference-message-container">',
    ],
)
def test_mail_client_quote_markup_starts_the_quote(marker: str) -> None:
    reply = html_reply(f"<div>Nieuw</div>{marker}<div>Oud bericht</div></div>")
    assert reply.before_quote == "Nieuw"
    assert reply.text.replace("\n\n", "\n") == "Nieuw\nOud bericht"  # text stays whole


@given(st.text(alphabet="<>/=\"' abpdivhrefstyle:none&;#x0123456789\n", max_size=300))
def test_conversion_never_raises_on_broken_markup(html: str) -> None:
    reply = html_reply(html)
    assert isinstance(reply.text, str)
