"""Pure comparison of expected and found records, and of two order books. No I/O.

For one table, records are grouped by identity. Within an identity, expected and found values
are matched exactly first; what is left over is classified:

- `duplicated`: found more often than expected with exactly the expected values;
- `mismatched`: expected values not found, paired with found values never expected (same
  identity, different content) — min of the two leftovers;
- `missing`: expected leftovers beyond those pairs;
- `unexpected`: found leftovers beyond those pairs (an identity or content never sent).

Records sent inside a capture hole the gatherer recorded are *optional*: stored or not, they
are not an error, and those not stored count as `in_hole` (docs/holes.md). A table is exact
when the four error counts are zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.verify.records import Record

Book = Mapping[str, Mapping[int, int]]
SIDES = ("yes", "no")


@dataclass(frozen=True)
class Discrepancy:
    kind: str  # missing | duplicated | mismatched | unexpected
    identity: str
    expected: str | None  # values as sent (None: nothing expected with this content)
    found: str | None  # values as stored
    count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "identity": self.identity,
            "expected": self.expected,
            "found": self.found,
            "count": self.count,
        }


@dataclass
class TableResult:
    table: str
    expected: int = 0
    found: int = 0
    missing: int = 0
    duplicated: int = 0
    mismatched: int = 0
    unexpected: int = 0
    in_hole: int = 0  # sent inside a recorded capture hole and not stored
    examples: list[Discrepancy] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.duplicated or self.mismatched or self.unexpected)

    def merge(self, other: TableResult, max_examples: int) -> None:
        self.expected += other.expected
        self.found += other.found
        self.missing += other.missing
        self.duplicated += other.duplicated
        self.mismatched += other.mismatched
        self.unexpected += other.unexpected
        self.in_hole += other.in_hole
        room = max_examples - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "expected": self.expected,
            "found": self.found,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "mismatched": self.mismatched,
            "unexpected": self.unexpected,
            "in_hole": self.in_hole,
            "exact": self.exact,
            "examples": [e.as_dict() for e in self.examples],
        }


def compare_records(
    table: str,
    expected: Iterable[Record],
    found: Iterable[Record],
    *,
    collapse_expected: bool = False,
    max_examples: int = 5,
    optional: Iterable[Record] = (),
) -> TableResult:
    """Compare two multisets of records (see the module docstring). Memory: O(distinct records).

    `optional` records were sent inside a recorded capture hole: each may or may not be found.
    """
    required: Counter[Record] = Counter(expected)
    maybe: Counter[Record] = Counter(optional)
    if collapse_expected:
        required = Counter(dict.fromkeys(required, 1))
        maybe = Counter(dict.fromkeys((r for r in maybe if r not in required), 1))
    want = required + maybe
    have: Counter[Record] = Counter(found)
    result = TableResult(table, expected=want.total(), found=have.total())
    excused: dict[str, int] = {}  # identity -> optional records not found
    by_identity: dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {}
    for (identity, values), count in want.items():
        extra = count - have.get((identity, values), 0)
        if extra > 0:
            by_identity.setdefault(identity, ([], []))[0].append((values, extra))
            optional_left = min(extra, maybe.get((identity, values), 0))
            if optional_left:
                excused[identity] = excused.get(identity, 0) + optional_left
    for (identity, values), count in have.items():
        wanted = want.get((identity, values), 0)
        if wanted and count > wanted:
            result.duplicated += count - wanted
            _example(result, max_examples, "duplicated", identity, values, values, count - wanted)
        elif not wanted:
            by_identity.setdefault(identity, ([], []))[1].append((values, count))
    for identity in sorted(by_identity):
        lost, strange = by_identity[identity]
        lost_n = sum(n for _, n in lost)
        strange_n = sum(n for _, n in strange)
        paired = min(lost_n, strange_n)
        in_hole = min(excused.get(identity, 0), lost_n - paired)
        result.mismatched += paired
        result.in_hole += in_hole
        result.missing += lost_n - paired - in_hole
        result.unexpected += strange_n - paired
        for (sent, _), (stored, _) in zip(lost, strange, strict=False):
            _example(result, max_examples, "mismatched", identity, sent, stored, 1)
        if lost_n > paired + in_hole:
            sent = (lost[len(strange) :] or lost)[0][0]
            count = lost_n - paired - in_hole
            _example(result, max_examples, "missing", identity, sent, None, count)
        if strange_n > paired:
            stored = (strange[len(lost) :] or strange)[0][0]
            _example(result, max_examples, "unexpected", identity, None, stored, strange_n - paired)
    return result


def _example(
    result: TableResult,
    max_examples: int,
    kind: str,
    identity: str,
    expected: str | None,
    found: str | None,
    count: int,
) -> None:
    if len(result.examples) < max_examples:
        result.examples.append(Discrepancy(kind, identity, expected, found, count))


@dataclass(frozen=True)
class BookDifference:
    """A market whose stored final book differs from the exchange's; the first differing level
    is the best (highest-priced) one on the first side that differs."""

    ticker: str
    side: str | None
    price: int | None
    expected_size: int | None  # None: level absent at the exchange
    found_size: int | None  # None: level absent in the database
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "side": self.side,
            "price": self.price,
            "expected_size": self.expected_size,
            "found_size": self.found_size,
            "reason": self.reason,
        }


def first_book_difference(ticker: str, expected: Book, found: Book) -> BookDifference | None:
    """None when both books hold exactly the same levels (zero-size levels count as absent)."""
    for side in SIDES:
        want = {p: s for p, s in expected.get(side, {}).items() if s}
        have = {p: s for p, s in found.get(side, {}).items() if s}
        for price in sorted(want.keys() | have.keys(), reverse=True):
            if want.get(price) != have.get(price):
                return BookDifference(
                    ticker, side, price, want.get(price), have.get(price), "level differs"
                )
    return None
