"""Charsets: wrong, misspelled and missing labels, stray bytes, encoded words and raw 8-bit
headers decode to the right text, or to replacement characters where none exists."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mail.parse import parse_mail
from gateway.mail.text import decode_text, decode_words, header_text

CHARSETS = Path(__file__).resolve().parent.parent / "data" / "charsets"
CASES = sorted(p.stem for p in CHARSETS.glob("*.eml"))


@pytest.mark.parametrize("name", CASES)
def test_fixture_decodes_to_the_text_the_sender_meant(name: str) -> None:
    expected = json.loads((CHARSETS / f"{name}.expected.json").read_text(encoding="utf-8"))
    mail = parse_mail((CHARSETS / f"{name}.eml").read_bytes())
    assert mail.subject == expected["subject"]
    assert mail.sender_name == expected["sender_name"]
    if "text" in expected:
        assert mail.text == expected["text"]
    for part in expected.get("text_contains", []):
        assert part in mail.text


def test_the_cases_cover_the_charset_troubles_we_promise() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("label", ["iso-8859-1", "ISO-8859-1", "us-ascii", "latin1", "cp1252"])
def test_windows_1252_bytes_under_a_latin1_or_ascii_label_read_as_windows_1252(label: str) -> None:
    assert decode_text("“€ – café”".encode("cp1252"), label) == "“€ – café”"


@pytest.mark.parametrize("label", ["iso-8859-1", "us-ascii", "windows-1252", "iso-8859-15"])
def test_utf8_bytes_under_a_western_label_read_as_utf8(label: str) -> None:
    assert decode_text("Zoë’s café".encode(), label) == "Zoë’s café"


def test_iso_8859_15_keeps_its_euro_sign() -> None:
    assert decode_text(b"\xa4 5", "iso-8859-15") == "€ 5"


def test_stray_bytes_in_utf8_become_replacement_characters_not_a_redecoding() -> None:
    assert decode_text("Jörg ".encode() + b"\xe9!", "utf-8") == "Jörg \ufffd!"


@pytest.mark.parametrize(
    ("label", "data", "text"),
    [
        ("utf8", "één".encode(), "één"),
        ('UTF-8"', "één".encode(), "één"),
        (' "utf-8" ', "één".encode(), "één"),
        ("cp-850", "café".encode("cp850"), "café"),
        ("latin1", "café".encode("latin-1"), "café"),
        ("unknown-8bit", "café".encode("cp1252"), "café"),
        ("x-unknown", "Ελλάδα".encode(), "Ελλάδα"),
        ("x-user-defined", "naïve".encode(), "naïve"),
        ("", "naïve".encode("cp1252"), "naïve"),
        (None, "naïve".encode(), "naïve"),
    ],
)
def test_misspelled_and_unknown_labels_are_read_leniently(
    label: str | None, data: bytes, text: str
) -> None:
    assert decode_text(data, label) == text


def test_without_a_usable_label_utf8_and_windows_1252_mixed_both_survive() -> None:
    assert decode_text("Café ".encode() + "€5 – ok".encode("cp1252"), None) == "Café €5 – ok"


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("ISO-2022-JP", "回線が切れました"),
        ("Shift_JIS", "ネットワーク①"),  # ① is Windows' cp932, which senders label Shift_JIS
        ("EUC-KR", "인터넷 연결"),
        ("GB2312", "网络中断"),
        ("koi8-r", "Сеть не работает"),
    ],
)
def test_east_asian_and_cyrillic_labels_are_honoured(label: str, text: str) -> None:
    superset = {"Shift_JIS": "cp932", "GB2312": "gb18030"}.get(label, label)
    assert decode_text(text.encode(superset), label) == text


@pytest.mark.parametrize("label", ["base64", "rot13", "punycode", "idna", "unicode_escape", "hex"])
def test_labels_naming_codecs_that_are_not_charsets_are_not_used(label: str) -> None:
    assert decode_text(b"caf\xc3\xa9 \\u0041 xn--", label) == "café \\u0041 xn--"


def test_bytes_invalid_in_a_declared_charset_get_replacement_characters() -> None:
    assert decode_text(b"\x82\xa0ok\x82", "shift_jis") == "あok\ufffd"


def test_encoded_words_split_inside_a_character_are_joined_before_decoding() -> None:
    assert decode_words("=?utf-8?q?Zo=C3?= =?utf-8?q?=AB?=") == "Zoë"


def test_space_between_encoded_words_is_dropped_but_not_around_plain_text() -> None:
    assert decode_words("=?utf-8?q?a?= =?utf-8?q?b?= c =?utf-8?q?d?=") == "ab c d"


def test_encoded_words_with_broken_base64_or_unknown_charset_keep_what_decodes() -> None:
    assert decode_words("=?utf-8?b?Y2Fmw6k?=") == "café"  # padding missing
    assert decode_words("=?x-bogus?q?caf=E9?=") == "café"


def test_encoded_words_with_a_language_suffix_are_decoded() -> None:
    assert decode_words("=?utf-8*nl?q?caf=C3=A9?=") == "café"


def test_raw_8bit_header_bytes_are_read_as_utf8_else_windows_1252() -> None:
    raw_utf8 = "Zoë".encode().decode("ascii", "surrogateescape")
    raw_latin = "Zoë".encode("cp1252").decode("ascii", "surrogateescape")
    assert header_text(raw_utf8) == header_text(raw_latin) == "Zoë"


def test_decomposed_accents_are_composed() -> None:
    assert header_text("=?utf-8?q?Zoe=CC=88?=") == "Zoë"


@given(
    st.binary(max_size=200), st.sampled_from([None, "utf-8", "latin1", "shift_jis", "x", "utf-16"])
)
def test_decoding_never_raises(data: bytes, label: str | None) -> None:
    assert isinstance(decode_text(data, label), str)


@given(st.text(alphabet="=?QqBb_ab-8utf/+ \r\n\x80é", max_size=80))
def test_decoding_encoded_words_never_raises(value: str) -> None:
    assert isinstance(header_text(value), str)
