"""Proof that a capture is exact: compare a captured database with the simulator's truth.

    from app.verify import verify_capture
    report = verify_capture("var/truth", "postgresql://postgres@localhost/kalshi_g1")
    report.exact, report.tables, report.book_differences

Read-only on both sides; memory is bounded by partitioning (docs/verify.md). This package never
writes to a database and never changes the truth directory.
"""

from app.verify.compare import (
    BookDifference,
    Discrepancy,
    TableResult,
    compare_records,
    first_book_difference,
)
from app.verify.records import RULES, TABLES, Record, TableRule
from app.verify.report import Report, render_text
from app.verify.run import VerifyInputError, verify_capture

__all__ = [
    "RULES",
    "TABLES",
    "BookDifference",
    "Discrepancy",
    "Record",
    "Report",
    "TableResult",
    "TableRule",
    "VerifyInputError",
    "compare_records",
    "first_book_difference",
    "render_text",
    "verify_capture",
]
