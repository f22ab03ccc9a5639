"""The outcome of a verification and its two renderings (text table, JSON document)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.units import hundredths_to_count, micros_to_dollars
from app.verify.books import BookSamples
from app.verify.compare import BookDifference, TableResult
from app.verify.exchange import ExchangeCheck

COLUMNS = ("expected", "found", "missing", "duplicated", "mismatched", "unexpected", "in hole")


@dataclass
class Report:
    truth: str
    database: str
    gatherer: str | None
    frames_sent: int
    tables: list[TableResult]
    books_checked: int = 0
    book_differences: list[BookDifference] = field(default_factory=list)  # first 1000
    book_differences_total: int = 0
    books_in_hole: int = 0  # differing books whose last sent frame lies in a recorded hole
    partitions: int = 1
    exchange: ExchangeCheck | None = None
    sampled_books: BookSamples | None = None

    @property
    def exact(self) -> bool:
        exchange_ok = (self.exchange is None or self.exchange.exact) and (
            self.sampled_books is None or self.sampled_books.exact
        )
        return (
            all(t.exact for t in self.tables)
            and not (self.book_differences or self.book_differences_total)
            and exchange_ok
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "truth": self.truth,
            "database": self.database,
            "gatherer": self.gatherer,
            "frames_sent": self.frames_sent,
            "exact": self.exact,
            "tables": {t.table: t.as_dict() for t in self.tables},
            "books": {
                "checked": self.books_checked,
                "in_hole": self.books_in_hole,
                "differing": max(self.book_differences_total, len(self.book_differences)),
                "differences": [d.as_dict() for d in self.book_differences],
            },
            "exchange": self.exchange.as_dict() if self.exchange is not None else None,
            "sampled_books": (
                self.sampled_books.as_dict() if self.sampled_books is not None else None
            ),
        }


def _size(value: int | None) -> str:
    return "absent" if value is None else hundredths_to_count(value)


def describe_book_difference(diff: BookDifference) -> str:
    if diff.side is None or diff.price is None:
        return f"{diff.ticker}: {diff.reason}"
    return (
        f"{diff.ticker}: {diff.side} bid {micros_to_dollars(diff.price)}: exchange "
        f"{_size(diff.expected_size)}, database {_size(diff.found_size)}"
    )


def render_text(report: Report, max_examples: int) -> list[str]:
    who = f"gatherer {report.gatherer}" if report.gatherer else "all gatherers"
    lines = [
        f"truth {report.truth} ({report.frames_sent} text frames sent)",
        f"database {report.database} ({who})",
        "",
        f"{'table':<22}" + "".join(f"{c:>12}" for c in COLUMNS),
    ]
    for table in report.tables:
        counts = (
            table.expected,
            table.found,
            table.missing,
            table.duplicated,
            table.mismatched,
            table.unexpected,
            table.in_hole,
        )
        mark = "" if table.exact else "   <-"
        lines.append(f"{table.table:<22}" + "".join(f"{n:>12}" for n in counts) + mark)
    lines.append("")
    lines.append(
        f"final books: {report.books_checked} markets checked, "
        f"{max(report.book_differences_total, len(report.book_differences))} differ"
        + (f", {report.books_in_hole} more in a recorded hole" if report.books_in_hole else "")
    )
    lines.extend(f"  {describe_book_difference(d)}" for d in report.book_differences)
    lines.extend(_exchange_lines(report.exchange))
    lines.extend(_sampled_lines(report.sampled_books))
    examples = [(t.table, e) for t in report.tables for e in t.examples]
    if examples and max_examples:
        lines.append("")
        lines.append("example discrepancies:")
        for name, example in examples:
            times = f" x{example.count}" if example.count > 1 else ""
            lines.append(f"  {name} {example.kind}{times}: {example.identity}")
            if example.expected is not None:
                lines.append(f"      sent:   {example.expected}")
            if example.found is not None:
                lines.append(f"      stored: {example.found}")
    lines.append("")
    lines.append("result: EXACT" if report.exact else "result: NOT EXACT")
    return lines


EXCHANGE_COLUMNS = ("exchange", "captured", "in hole", "unexplained")


def _exchange_lines(check: ExchangeCheck | None) -> list[str]:
    """The second table: what the exchange did during capture, and where each event went."""
    if check is None:
        return []
    lines = ["", f"against the exchange log ({check.holes} capture holes recorded):"]
    lines.append(f"{'table':<22}" + "".join(f"{c:>12}" for c in EXCHANGE_COLUMNS))
    for table in check.tables:
        counts = (table.exchange, table.captured, table.in_hole, table.unexplained)
        mark = "" if table.exact else "   <-"
        lines.append(f"{table.table:<22}" + "".join(f"{n:>12}" for n in counts) + mark)
    lines.extend(f"  problem: {problem}" for problem in check.problems)
    for table in check.tables:
        lines.extend(f"  {table.table} unexplained: {text}" for text in table.examples)
    return lines


def _sampled_lines(sampled: BookSamples | None) -> list[str]:
    if sampled is None:
        return []
    lines = [
        "",
        f"books at {sampled.samples} sampled instants against the exchange's own books: "
        f"{sampled.checked} compared, {sampled.differing} differ ({sampled.in_hole} in a hole, "
        f"{sampled.busy} changing at the instant, {sampled.not_captured} not captured yet)",
    ]
    for at_ns, difference in sampled.differences:
        lines.append(f"  at {at_ns} ns: {describe_book_difference(difference)}")
    return lines
