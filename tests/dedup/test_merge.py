"""The deduplicator against real PostgreSQL: three gatherer databases filled through the real
ingest path, merged into production (issue 10, DESIGN §5: trades, lifecycle, tickers)."""

from __future__ import annotations

import json
from collections import Counter

import psycopg2

from app.config import GathererDatabase
from app.db.migrations import downgrade, upgrade
from app.dedup import run_dedup
from tests.conftest import run_cli
from tests.dedup.conftest import Fleet, fee_update, lifecycle, rows, settled, store, ticker, trade


def _fill(fleet: Fleet) -> None:
    g = fleet.gatherers
    # Trades: overlapping ranges; the union is 1..30.
    store(g["g1"], "g1", [trade(i) for i in range(1, 21)])
    store(g["g2"], "g2", [trade(i) for i in range(10, 31)])
    store(g["g3"], "g3", [trade(i) for i in range(5, 26)])
    # Tickers: message 11 really came twice (two identical updates in one millisecond); g1 saw
    # both, g2 one, g3 only the first five messages.
    store(g["g1"], "g1", [ticker(i) for i in range(1, 12)] + [ticker(11)])
    store(g["g2"], "g2", [ticker(i) for i in range(1, 12)])
    store(g["g3"], "g3", [ticker(i) for i in range(1, 6)])
    # Lifecycle: 1..5 everywhere, 6 only on g3; event-level fee updates 1, 2 on g1 and g2.
    for name in ("g1", "g2"):
        store(g[name], name, [lifecycle(i) for i in range(1, 6)] + [fee_update(1), fee_update(2)])
    store(g["g3"], "g3", [lifecycle(i) for i in range(1, 7)])


def _production(fleet: Fleet) -> dict[str, Counter[str]]:
    p = fleet.production
    return {
        "trades": Counter(r[0] for r in rows(p, "SELECT trade_id FROM trades")),
        "tickers": Counter(
            str(r) for r in rows(p, "SELECT exchange_ts, price, volume FROM tickers")
        ),
        "lifecycle": Counter(
            r[0] or r[1]
            for r in rows(p, "SELECT market_ticker, event_ticker FROM lifecycle_events")
        ),
    }


def test_production_is_the_union_with_max_multiplicity_and_a_rerun_adds_nothing(
    fleet: Fleet,
) -> None:
    _fill(fleet)
    report = run_dedup(settled(fleet).settings(), fleet.production)
    assert report.complete and not report.unreachable
    assert report.inserted == {"trades": 30, "tickers": 12, "lifecycle_events": 8}
    merged = _production(fleet)
    assert len(merged["trades"]) == 30 and set(merged["trades"].values()) == {1}
    assert sum(merged["tickers"].values()) == 12 and max(merged["tickers"].values()) == 2
    assert len(merged["lifecycle"]) == 8 and set(merged["lifecycle"].values()) == {1}
    # Provenance: every production row names the gatherer it was taken from.
    sources = rows(fleet.production, "SELECT DISTINCT gatherer FROM trades")
    assert {s[0] for s in sources} <= {"g1", "g2", "g3"}

    again = run_dedup(fleet.settings(), fleet.production)
    assert sum(again.inserted.values()) == 0 and sum(again.read.values()) == 0
    assert _production(fleet) == merged


def test_late_rows_arrive_and_multiplicity_stays_the_maximum(fleet: Fleet) -> None:
    _fill(fleet)
    run_dedup(settled(fleet).settings(), fleet.production)
    g = fleet.gatherers
    # g2 now has message 11 three times (it was resent twice more): production follows.
    store(g["g2"], "g2", [ticker(11), ticker(11), trade(31)])
    # g3 catches up on message 11 once: below the maximum, nothing to add.
    store(g["g3"], "g3", [ticker(11)])
    report = run_dedup(settled(fleet).settings(), fleet.production)
    assert report.inserted == {"trades": 1, "tickers": 1}
    merged = _production(fleet)
    assert max(merged["tickers"].values()) == 3 and len(merged["trades"]) == 31


def test_a_row_committed_late_below_the_cursor_is_not_skipped(fleet: Fleet) -> None:
    """The DED-2 flaw: a transaction that started earlier commits after later ones were
    merged. The cursor stops at the oldest running transaction, so its rows still come."""
    g1 = fleet.gatherers["g1"]
    only_g1 = fleet.settings(gatherers=fleet.settings().gatherers[:1])
    store(g1, "g1", [trade(1)])
    settled(fleet)
    slow = psycopg2.connect(g1)
    with slow.cursor() as cur:  # an open transaction: its id is older than the next writes'
        cur.execute(
            "INSERT INTO trades (trade_id, exchange_ts, market_ticker, yes_price, no_price, "
            "size, source, gatherer, connection_id, received_ns, received_at, batch_pos) "
            "VALUES ('late-1', '2026-09-21 12:00:00+00', 'KXA-26DEC01-T1', 1, 999999, 100, "
            "'rest', 'g1', 'g1-rest', 1, '2026-09-21 12:00:00+00', 0)"
        )
    store(g1, "g1", [trade(2), trade(3)])  # newer transactions commit first
    first = run_dedup(only_g1, fleet.production)
    assert first.inserted["trades"] == 1  # trade 1 only: 2 and 3 wait behind the open one
    slow.commit()
    slow.close()
    settled(fleet)
    second = run_dedup(only_g1, fleet.production)
    assert second.inserted["trades"] == 3
    ids = {r[0] for r in rows(fleet.production, "SELECT trade_id FROM trades")}
    assert "late-1" in ids and len(ids) == 4


def test_small_batches_and_an_unreachable_gatherer(fleet: Fleet) -> None:
    _fill(fleet)
    down = GathererDatabase(name="g9", database_url="postgresql://postgres@127.0.0.1:1/nope")
    settings = fleet.settings(batch_rows=3)
    settings = settings.model_copy(update={"gatherers": (*settings.gatherers, down)})
    settled(fleet)
    report = run_dedup(settings, fleet.production)
    assert report.unreachable == ["g9"]
    assert report.inserted == {"trades": 30, "tickers": 12, "lifecycle_events": 8}
    assert report.batches > 10  # three rows a batch (a transaction's rows are never split)
    cursors = rows(fleet.production, "SELECT gatherer, table_name FROM dedup_cursors")
    assert {c[0] for c in cursors} == {"g1", "g2", "g3"}


def test_cli_runs_once_and_reports_clear_errors(fleet: Fleet, scratch_database: str) -> None:
    _fill(fleet)
    settled(fleet)
    args = ["dedup", "run", "--production-url", fleet.production]
    for name, url in fleet.gatherers.items():
        args += ["--gatherer", f"{name}={url}"]
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["inserted"] == {"trades": 30, "tickers": 12, "lifecycle_events": 8}
    plain = run_cli(*args)
    assert plain.returncode == 0 and plain.stdout.strip().endswith("caught up"), plain.stdout

    nothing = run_cli("dedup", "run", KD_DEDUP__PRODUCTION_URL="")
    assert nothing.returncode == 2 and "no production database" in nothing.stderr
    bad = run_cli("dedup", "run", "--production-url", fleet.production, "--gatherer", "g1")
    assert bad.returncode == 2 and "is not NAME=URL" in bad.stderr
    bare = run_cli(
        "dedup", "run", "--production-url", scratch_database, "--gatherer", f"g1={fleet.production}"
    )
    assert bare.returncode == 2 and "production is not migrated" in bare.stderr, bare.stderr
    assert "Traceback" not in bad.stderr + bare.stderr + nothing.stderr


def test_rows_stored_before_ingest_xid_existed_are_merged_once(fleet: Fleet) -> None:
    """A gatherer upgraded to 0006 with data: its older rows (ingest_xid NULL) are taken on
    the cursor's first pass, never again; rows stored after the upgrade follow as usual."""
    g1 = fleet.gatherers["g1"]
    downgrade(g1, "0005")
    store(g1, "g1", [trade(i) for i in range(1, 4)] + [ticker(1), lifecycle(1)])
    store(g1, "g1", [trade(4), trade(5)])
    upgrade(g1, create=False)
    assert rows(g1, "SELECT count(*) FROM trades WHERE ingest_xid IS NULL") == [(5,)]
    # Batches of two rows: the old rows are paged through in key order, none twice.
    only_g1 = fleet.settings(gatherers=fleet.settings().gatherers[:1], batch_rows=2)
    first = run_dedup(only_g1, fleet.production)
    assert first.inserted == {"trades": 5, "tickers": 1, "lifecycle_events": 1}
    assert first.read == {"trades": 5, "tickers": 1, "lifecycle_events": 1}
    assert first.batches >= 5
    store(g1, "g1", [trade(6)])
    settled(fleet)
    second = run_dedup(only_g1, fleet.production)
    assert second.inserted == {"trades": 1} and second.read == {"trades": 1}
