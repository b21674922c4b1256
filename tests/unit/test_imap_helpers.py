from gateway.intake.imap import FETCH_BYTES, fetch_groups, parse_fetch, uid_ranges, uid_set


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


def testfetch_groups_keep_uid_order_and_put_each_oversize_message_alone() -> None:
    sizes = {1: 10, 2: 500, 3: 10, 4: 10, 5: 10}
    assert list(fetch_groups([5, 4, 3, 2, 1], sizes, limit=100)) == [[1], [2], [3, 4, 5]]


def testfetch_groups_cut_runs_at_fetch_bytes() -> None:
    third = FETCH_BYTES // 3 + 1
    sizes = dict.fromkeys(range(1, 6), third)
    groups = list(fetch_groups(list(range(1, 6)), sizes, limit=FETCH_BYTES))
    assert groups == [[1, 2], [3, 4], [5]]
