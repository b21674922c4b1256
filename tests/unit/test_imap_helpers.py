from gateway.intake.imap import parse_fetch, uid_ranges, uid_set


def test_uid_set_compresses_runs() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


def test_uid_ranges_bound_each_fetch() -> None:
    assert list(uid_ranges(list(range(1, 8)), 3)) == [[1, 2, 3], [4, 5, 6], [7]]


def test_parse_fetch_pairs_each_literal_with_its_uid_before_or_after_it() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 11 BODY[] {5}", bytearray(b"hello"), b")",
        b"2 FETCH (FLAGS (\\Seen) UID 12)",
        b"3 FETCH (BODY[] {3}", bytearray(b"abc"), b" UID 13)",
        b"Fetch completed.",
    ]  # fmt: skip
    assert parse_fetch(lines) == [(11, b"hello"), (13, b"abc")]
