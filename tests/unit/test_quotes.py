"""Quote and signature splitting on real-world reply shapes (tests/data/replies/)."""

from pathlib import Path

import pytest

from gateway.mail.quotes import new_part

REPLIES = Path(__file__).resolve().parent.parent / "data" / "replies"
CASES = sorted(p.stem for p in REPLIES.glob("*.txt") if not p.stem.endswith(".expected"))


@pytest.mark.parametrize("name", CASES)
def test_new_part_is_what_the_customer_wrote(name: str) -> None:
    text = (REPLIES / f"{name}.txt").read_text(encoding="utf-8")
    expected = (REPLIES / f"{name}.expected.txt").read_text(encoding="utf-8").strip()
    assert new_part(text) == expected


def test_the_cases_cover_the_clients_we_promise() -> None:
    assert len(CASES) >= 8


def test_empty_text_stays_empty() -> None:
    assert new_part("  \n") == ""
