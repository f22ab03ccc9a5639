"""The pure comparison rules (no database, no simulator)."""

from __future__ import annotations

from app.verify import compare_records, first_book_difference


def test_exact_multisets() -> None:
    rows = [("a", "1"), ("a", "1"), ("b", "2")]
    result = compare_records("t", rows, list(reversed(rows)))
    assert result.exact and (result.expected, result.found) == (3, 3)


def test_classification() -> None:
    expected = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
    found = [("a", "1"), ("a", "1"), ("b", "9"), ("e", "5")]
    result = compare_records("t", expected, found)
    assert (result.duplicated, result.mismatched, result.missing, result.unexpected) == (1, 1, 2, 1)
    kinds = {(e.kind, e.identity) for e in result.examples}
    assert ("mismatched", "b") in kinds and ("duplicated", "a") in kinds
    assert ("unexpected", "e") in kinds


def test_mismatch_pairs_within_one_identity() -> None:
    expected = [("k", "1"), ("k", "2"), ("k", "3")]
    found = [("k", "1"), ("k", "7")]
    result = compare_records("t", expected, found)
    assert (result.mismatched, result.missing, result.unexpected) == (1, 1, 0)


def test_collapse_expected_counts_each_message_once() -> None:
    expected = [("trade-1", "v"), ("trade-1", "v")]  # one trade sent on two connections
    assert compare_records("trades", expected, [("trade-1", "v")], collapse_expected=True).exact
    twice = compare_records("trades", expected, [("trade-1", "v")] * 2, collapse_expected=True)
    assert twice.duplicated == 1


def test_examples_are_bounded() -> None:
    result = compare_records("t", [(str(i), "x") for i in range(50)], [], max_examples=3)
    assert result.missing == 50 and len(result.examples) == 3


def test_first_book_difference_is_the_best_differing_level() -> None:
    expected = {"yes": {500000: 100, 490000: 200}, "no": {400000: 5}}
    assert (
        first_book_difference("M", expected, {"yes": dict(expected["yes"]), "no": {400000: 5}})
        is None
    )
    found = {"yes": {500000: 100, 490000: 300, 480000: 1}, "no": {400000: 5}}
    difference = first_book_difference("M", expected, found)
    assert difference is not None
    assert (difference.side, difference.price) == ("yes", 490000)
    assert (difference.expected_size, difference.found_size) == (200, 300)
    only_no = first_book_difference("M", expected, {"yes": expected["yes"], "no": {}})
    assert only_no is not None and (only_no.side, only_no.found_size) == ("no", None)


def test_records_sent_inside_a_hole_may_be_missing_but_not_duplicated() -> None:
    required = [("a", "1"), ("b", "2")]
    optional = [("c", "3"), ("c", "3"), ("d", "4")]
    # c stored once of twice, d not at all: explained by the hole, exact.
    result = compare_records("t", required, [("a", "1"), ("b", "2"), ("c", "3")], optional=optional)
    assert result.exact and (result.in_hole, result.expected, result.found) == (2, 5, 3)
    # A required record still counts as missing; more copies than sent are duplicates.
    worse = compare_records("t", required, [("a", "1"), ("d", "4"), ("d", "4")], optional=optional)
    assert (worse.missing, worse.duplicated, worse.in_hole) == (1, 1, 2)
    # A hole does not excuse a changed value.
    changed = compare_records("t", [], [("d", "9")], optional=[("d", "4")])
    assert (changed.mismatched, changed.in_hole) == (1, 0)
    # Collapsed tables (trades): a trade both required and optional is required once.
    trades = compare_records("trades", [("t1", "v")], [], optional=[("t1", "v"), ("t2", "v")],
                             collapse_expected=True)  # fmt: skip
    assert (trades.missing, trades.in_hole) == (1, 1)
