"""Full sync, re-sync idempotency and reconcile against a real simulator and PostgreSQL."""

from __future__ import annotations

from typing import Any

from app.registry import RegistrySettings, full_sync, reconcile
from tests.conftest import run_cli
from tests.registry.conftest import query, rest_client


def _truth(client: Any) -> tuple[dict[str, str], set[str], set[str]]:
    markets = {m["ticker"]: m["status"] for m in client.iter_markets(limit=1000)}
    events = {e["event_ticker"] for e in client.iter_events()}
    series = {s["ticker"] for s in client.iter_series()}
    return markets, events, series


def test_full_sync_pages_everything_and_resync_writes_nothing(sim_factory, conn, feed):
    # --rate is low so statuses barely move while we compare; lifetime is long.
    sim = sim_factory("--markets", "260", "--seed", "5", "--rate", "5")
    settings = RegistrySettings(page_size=37, event_page_size=11)
    with rest_client(sim) as client:
        report = full_sync(conn, client, settings, feed=feed)
        markets, events, series = _truth(client)

    assert report.pages > 260 // 37  # paging really happened
    assert report.markets.inserted == len(markets) == 260
    assert report.invalid == 0
    db_markets = dict(query(conn, "SELECT ticker, status FROM markets"))
    assert db_markets == markets
    assert {r[0] for r in query(conn, "SELECT event_ticker FROM events")} == events
    assert {r[0] for r in query(conn, "SELECT ticker FROM series")} == series
    # typed columns and full raw JSON
    ticker = next(iter(markets))
    row = query(
        conn,
        "SELECT event_ticker, series_ticker, close_time, metadata->>'rules_primary' "
        "FROM markets WHERE ticker = %s",
        ticker,
    )[0]
    assert ticker.startswith(row[0]) and row[0].startswith(row[1])
    assert row[2] is not None and row[3]
    # one first-sighting history row per market, from REST
    history = query(
        conn, "SELECT count(*), count(DISTINCT market_ticker) FROM market_status_history"
    )
    assert history[0] == (260, 260)
    assert query(conn, "SELECT DISTINCT source, previous_status FROM market_status_history") == [
        ("rest", None)
    ]
    # the listener's set: every active market, published as one version per page or so
    snapshot = feed.snapshot()
    assert snapshot.tickers == {t for t, s in markets.items() if s in ("active", "initialized")}
    assert snapshot.version >= 1

    first_seen = query(conn, "SELECT max(updated_at) FROM markets")[0][0]
    with rest_client(sim) as client:
        again = full_sync(conn, client, settings, feed=feed)
    assert again.markets.inserted == 0
    assert again.markets.updated == 0
    assert again.markets.status_changes == 0
    assert again.events.inserted == again.events.updated == 0
    assert again.series.inserted == again.series.updated == 0
    assert query(conn, "SELECT count(*) FROM market_status_history")[0][0] == 260
    assert query(conn, "SELECT max(updated_at) FROM markets")[0][0] == first_seen  # no rewrite
    assert feed.snapshot().version == snapshot.version  # nothing published


def test_reconcile_fixes_corrupted_rows_and_reports_them(sim_factory, conn, feed):
    sim = sim_factory("--markets", "40", "--seed", "9", "--rate", "5")
    with rest_client(sim) as client:
        full_sync(conn, client, RegistrySettings(page_size=15), feed=feed)
        victim, other = (
            r[0] for r in query(conn, "SELECT ticker FROM markets ORDER BY ticker LIMIT 2")
        )
        query(
            conn,
            "UPDATE markets SET status = 'closed', title = 'corrupt' WHERE ticker = %s",
            victim,
        )
        query(
            conn,
            "UPDATE markets SET metadata = metadata - 'rules_primary' WHERE ticker = %s",
            other,
        )
        query(
            conn, "DELETE FROM events WHERE event_ticker = (SELECT min(event_ticker) FROM events)"
        )
        # the change feed drifted too: the corrupted market left the set
        feed.publish(removed=[victim])
        report = reconcile(conn, client, RegistrySettings(page_size=15), feed=feed)
    assert report.markets.updated == 2
    assert set(report.drifted) == {victim, other}
    status, title = query(conn, "SELECT status, title FROM markets WHERE ticker = %s", victim)[0]
    assert status == "active" and title != "corrupt"
    assert query(conn, "SELECT metadata ? 'rules_primary' FROM markets WHERE ticker = %s", other)[
        0
    ][0]
    assert report.events.inserted == 1  # the deleted event came back
    assert report.watermark is not None
    assert victim in feed.snapshot().tickers
    assert report.published_added == 1


def test_cli_sync_prints_counts_and_is_idempotent(sim_factory, registry_db):
    sim = sim_factory("--markets", "30", "--seed", "2", "--rate", "5")
    args = ("registry", "sync", "--rest-url", sim.api, "--database-url", registry_db)
    first = run_cli(*args, "--page-size", "7")
    assert first.returncode == 0, first.stderr
    assert "30 new, 0 updated" in first.stdout and "30 status changes" in first.stdout
    second = run_cli(*args, "--json")
    assert second.returncode == 0, second.stderr
    assert '"markets_inserted":0' in second.stdout and '"status_changes":0' in second.stdout
    shown = run_cli("registry", "show", "--database-url", registry_db, "KXSIMA-E0-T1")
    assert shown.returncode == 0, shown.stderr
    assert "status history:" in shown.stdout and "(rest sync)" in shown.stdout
    missing = run_cli("registry", "show", "--database-url", registry_db, "NOPE")
    assert missing.returncode == 1 and missing.stderr.startswith("error: market NOPE")


def test_cli_sync_unreachable_exchange_is_one_error_line(registry_db, port):
    result = run_cli(
        "registry", "sync", "--rest-url", f"http://127.0.0.1:{port}/trade-api/v2",
        "--database-url", registry_db, KD_KALSHI__MAX_RETRIES="1",
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach" in errors[0], result.stderr


def test_cli_sync_unreachable_database_is_one_error_line(port):
    result = run_cli(
        "registry", "sync", "--rest-url", f"http://127.0.0.1:{port}/trade-api/v2",
        "--database-url", f"postgresql://postgres@127.0.0.1:{port}/nothing",
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
