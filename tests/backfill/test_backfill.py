"""The trade backfill against a real simulator process and a real migrated database: exact
rows for exactly the holes' windows, idempotence next to WebSocket rows, pagination, the
historical cutoff (fixed or moving), a legacy-format exchange, failures recorded on the hole,
and two workers never sharing a hole."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import requests
from prometheus_client import REGISTRY

from app.backfill import BACKFILL_CONNECTION_PREFIX, backfill_trades
from app.config import Settings
from app.db.copy import write_rows
from app.db.rows import TradeRow
from app.ingest import backfill_trade_holes
from app.kalshi.wire import rfc3339_to_ns
from app.simulator.truth import load_truth
from tests.backfill.conftest import (
    T0_S,
    SimRun,
    add_hole,
    at,
    backfill_config,
    client_for,
    fast_kalshi,
    finished_sim,
    hole_state,
    stored_trades,
)
from tests.conftest import free_port
from tests.kalshi.peers import Received, Reply, ScriptedHttpServer
from tests.simulator.conftest import EPOCH_MS, Sim

NS = 1_000_000_000


def standard_holes(conn: Any, gatherer: str, run: SimRun) -> dict[str, Any]:
    """The four holes of the brief, and the rows the two backfillable ones must produce.

    With margin 0.5 s: H1 (every market) 0.6 s .. 1.4 s -> seconds 0..2 of the run; H2 (two
    markets) 4.6 s .. 4.8 s -> seconds 4..6. Second 3 is only in the open hole and the ticker
    hole, so none of its trades may appear.
    """
    pair = run.busiest(2)
    add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)
    add_hole(conn, gatherer, "h2-pair", start=4.6, end=4.8, markets=pair)
    add_hole(conn, gatherer, "h3-open", start=3.2, end=None)
    add_hole(conn, gatherer, "h4-ticker", start=3.0, end=3.5, channel="ticker", status=None)
    expected = {
        "h1-all": run.in_seconds(T0_S, T0_S + 2),
        "h2-pair": run.in_seconds(T0_S + 4, T0_S + 6, set(pair)),
    }
    return {"pair": pair, "expected": expected}


def test_backfill_fills_closed_trade_holes_exactly(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    holes = standard_holes(conn, gatherer, sim_run)
    expected = holes["expected"]
    # page_limit 5: every query crosses many pages (cursor followed to the end)
    assert len(expected["h1-all"]) > 40 and len(expected["h2-pair"]) > 10
    with client_for(sim_run.sim.api) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)

    assert report.outcomes() == {"done": 2, "retry": 0, "failed": 0}, report.holes
    assert [r.hole_id for r in report.holes] == ["h1-all", "h2-pair"]  # oldest first
    assert [r.queries for r in report.holes] == [1, 2]  # unfiltered, then one per market
    assert report.pending == 1  # the open hole
    assert stored_trades(conn) == sorted(expected["h1-all"] + expected["h2-pair"])
    for hole_id, rows in expected.items():
        state = hole_state(conn, gatherer, hole_id)
        assert state["status"] == "done" and state["trades"] == len(rows), (hole_id, state)
        assert state["attempts"] == 1 and state["error"] is None
        assert state["at"] is not None
        with conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT gatherer, sid, seq FROM trades WHERE connection_id = %s",
                (BACKFILL_CONNECTION_PREFIX + hole_id,),
            )
            assert cur.fetchall() == [(gatherer, None, None)]
    # the open hole and the ticker hole are untouched
    open_hole = hole_state(conn, gatherer, "h3-open")
    assert (open_hole["status"], open_hole["attempts"], open_hole["at"]) == ("pending", 0, None)
    ticker_hole = hole_state(conn, gatherer, "h4-ticker")
    assert (ticker_hole["status"], ticker_hole["attempts"]) == (None, 0)
    # and the REST answer, read independently, agrees with the truth for the pair's window
    for ticker in holes["pair"]:
        body = requests.get(
            f"{sim_run.sim.api}/markets/trades",
            params={"ticker": ticker, "min_ts": T0_S + 4, "max_ts": T0_S + 6, "limit": 1000},
            timeout=10,
        ).json()
        assert {t["trade_id"] for t in body["trades"]} == {
            row[0] for row in expected["h2-pair"] if row[3] == ticker
        }


def ws_row(expected: tuple[Any, ...], position: int) -> TradeRow:
    """The WebSocket copy of a trade: same id and exchange second, other provenance."""
    received_ns = expected[2] * 1_000_000 + 40_000_000
    return TradeRow(
        trade_id=expected[0],
        exchange_ts=expected[1],
        exchange_ms=expected[2],
        market_ticker=expected[3],
        yes_price=expected[4],
        no_price=expected[5],
        size=expected[6],
        taker_side=expected[7],
        taker_book_side=expected[8],
        is_block_trade=None,
        source="ws",
        gatherer="g-ws",
        connection_id="c-ws",
        sid=11,
        seq=position + 1,
        received_ns=received_ns,
        received_at=datetime.fromtimestamp(received_ns / 1e9, UTC),
        batch_pos=position,
    )


def test_trades_already_stored_from_the_websocket_are_neither_duplicated_nor_counted(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    holes = standard_holes(conn, gatherer, sim_run)
    expected = holes["expected"]["h1-all"]
    seen = expected[::10]
    assert write_rows(conn, [ws_row(row, i) for i, row in enumerate(seen)]) == {"trades": len(seen)}
    conn.commit()
    config = backfill_config()
    with client_for(sim_run.sim.api) as client:
        first = backfill_trades(conn, client, config, gatherer=gatherer)
    assert first.holes[0].fetched == len(expected)
    assert first.holes[0].inserted == len(expected) - len(seen)
    assert hole_state(conn, gatherer, "h1-all")["trades"] == len(expected) - len(seen)
    # one row per trade; the WebSocket copies kept as they were
    ids = [row[0] for row in expected]
    rows = stored_trades(conn, f"trade_id IN ({', '.join(repr(i) for i in ids)})")
    assert [row[0] for row in rows] == sorted(ids)
    assert {row[0] for row in rows if row[10] == "ws"} == {row[0] for row in seen}
    before = stored_trades(conn)

    with client_for(sim_run.sim.api) as client:
        again = backfill_trades(conn, client, config, gatherer=gatherer)
    assert again.holes == [] and again.inserted == 0  # nothing pending and closed
    assert stored_trades(conn) == before
    # even a hole put back to pending re-fetches everything and inserts nothing
    with conn.cursor() as cur:
        cur.execute("UPDATE capture_holes SET backfill_status = 'pending' WHERE hole_id = 'h1-all'")
    conn.commit()
    with client_for(sim_run.sim.api) as client:
        redo = backfill_trades(conn, client, config, gatherer=gatherer)
    assert (redo.holes[0].fetched, redo.holes[0].inserted) == (len(expected), 0)
    state = hole_state(conn, gatherer, "h1-all")
    assert (state["status"], state["trades"], state["attempts"]) == ("done", 0, 2)
    assert stored_trades(conn) == before


def test_a_long_market_list_is_one_unfiltered_query_kept_to_its_markets(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    three = sim_run.busiest(3)
    add_hole(conn, gatherer, "h-three", start=0.6, end=1.4, markets=three)
    config = backfill_config(ticker_query_max=2, page_limit=3)
    with client_for(sim_run.sim.api) as client:
        report = backfill_trades(conn, client, config, gatherer=gatherer)
    expected = sim_run.in_seconds(T0_S, T0_S + 2, set(three))
    assert report.holes[0].queries == 1
    assert stored_trades(conn) == expected
    assert hole_state(conn, gatherer, "h-three")["trades"] == len(expected)


def test_the_part_before_the_historical_cutoff_comes_from_historical_trades(
    tmp_path: Path, conn: Any, gatherer: str
) -> None:
    """A real simulator with its cutoff inside a hole's window (`--historical-cutoff-s`):
    the older trades are served only by `/historical/trades`, the rest only by
    `/markets/trades`, so storing every trade of the window exactly once proves each part was
    asked of the right endpoint."""
    # 1,200 events at 400/s: the clock stops at T0 + 2.9975 s, the cutoff 1.4975 s earlier
    with finished_sim(tmp_path, "--historical-cutoff-s", "1.4975", max_events=1200) as run:
        body = requests.get(f"{run.sim.api}/historical/cutoff", timeout=10).json()
        cutoff_ns = rfc3339_to_ns(body["trades_created_ts"])
        assert cutoff_ns == (T0_S + 1) * NS + NS // 2  # in the middle of H1's window
        one = run.busiest(1)
        add_hole(conn, gatherer, "h-old", start=-1.0, end=-0.6, markets=one)  # seconds -2..0
        add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)  # seconds 0..2, across it
        add_hole(conn, gatherer, "h-late", start=2.6, end=2.8, markets=one)  # seconds 2..4
        with client_for(run.sim.api) as client:
            report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
        # independently: the two endpoints split H1's window at the cutoff, both non-empty
        window = {"min_ts": T0_S, "max_ts": T0_S + 2, "limit": 1000}
        older = requests.get(f"{run.sim.api}/historical/trades", params=window, timeout=10)
        newer = requests.get(f"{run.sim.api}/markets/trades", params=window, timeout=10)
    assert report.outcomes() == {"done": 3, "retry": 0, "failed": 0}, report.holes
    results = {r.hole_id: r for r in report.holes}
    # historical only; both sides of the cutoff; live only (the cutoff did not move)
    assert [results[h].queries for h in ("h-old", "h1-all", "h-late")] == [1, 2, 1]
    expected = {
        "h-old": run.in_seconds(T0_S - 2, T0_S, set(one)),
        "h1-all": run.in_seconds(T0_S, T0_S + 2),
        "h-late": run.in_seconds(T0_S + 2, T0_S + 4, set(one)),
    }
    for hole_id, rows in expected.items():
        assert results[hole_id].fetched == len(rows), hole_id
    everything = sorted(set(expected["h-old"] + expected["h1-all"] + expected["h-late"]))
    assert stored_trades(conn) == everything
    # oldest first: H1 counts only what h-old had not stored; h-late's trades (second 2, the
    # run's last) were all H1's already
    overlap = set(expected["h1-all"]) & set(expected["h-old"])
    assert overlap and results["h1-all"].inserted == len(expected["h1-all"]) - len(overlap)
    assert expected["h-late"] and results["h-late"].inserted == 0
    before = {row[0] for row in expected["h1-all"] if row[2] * 1_000_000 < cutoff_ns}
    after = {row[0] for row in expected["h1-all"]} - before
    assert len(before) > 10 and len(after) > 10  # the split is not vacuous
    assert {t["trade_id"] for t in older.json()["trades"]} == before
    assert {t["trade_id"] for t in newer.json()["trades"]} == after


def test_a_cutoff_moving_during_the_fetch_loses_no_trade(
    tmp_path: Path, conn: Any, gatherer: str
) -> None:
    """The cutoff trails a running clock, so it passes trades while the hole is fetched (in
    small pages): a trade that left `/markets/trades` before the live query reached it is
    asked of `/historical/trades` once the fetch saw the cutoff move."""
    flags = ["--markets", "8", "--seed", "11", "--rate", "2000", "--epoch-ms", str(EPOCH_MS)]
    sim = Sim([*flags, "--historical-cutoff-s", "2.5"], tmp_path / "truth", tmp_path / "sim.log")
    try:
        deadline = time.monotonic() + 30
        while sim.state()["virtual_ns"] < (T0_S * NS) + 3_300_000_000:  # the window is past
            assert time.monotonic() < deadline, sim.state()
            time.sleep(0.05)
        # seconds 0..2; the cutoff starts near 0.8 s and moves on while hundreds of 5-trade
        # pages are fetched (without the second look about 80 of ~1,200 trades were lost)
        add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)
        with client_for(sim.api) as client:
            report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
        sim.dump()
        run = SimRun(sim, load_truth(tmp_path / "truth").trades)
    finally:
        code = sim.stop()
        assert code == 0, sim.log_path.read_text()[-2000:]
    assert report.outcomes()["done"] == 1, report.holes
    expected = run.in_seconds(T0_S, T0_S + 2)
    assert len(expected) > 500
    # historical part, live part, then the stretch the cutoff passed, asked again
    assert report.holes[0].queries == 3
    assert report.holes[0].fetched == len(expected)
    assert stored_trades(conn) == expected


def test_a_404_from_historical_trades_is_an_error_on_the_hole(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    """An exchange that has a cutoff must serve `/historical/trades`: a 404 there is not an
    empty answer (the hole would be marked done without its older trades)."""
    add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)  # across the cutoff
    add_hole(conn, gatherer, "h-late", start=2.6, end=2.8)  # after it: live only
    cutoff = datetime.fromtimestamp(T0_S + 1.5, UTC).isoformat().replace("+00:00", "Z")
    http = requests.Session()

    def answer(request: Received) -> Reply:
        if request.path.endswith("/historical/cutoff"):
            return Reply(body={"trades_created_ts": cutoff})
        if request.path.endswith("/historical/trades"):
            return Reply(404, {"code": "not_found", "message": "no such path"})
        body = http.get(f"{sim_run.sim.api}/markets/trades", params=request.query, timeout=10)
        return Reply(body=body.json())

    with ScriptedHttpServer(answer) as server, client_for(server.base_url) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
    outcomes = [(r.hole_id, r.outcome) for r in report.holes]
    assert outcomes == [("h1-all", "retry"), ("h-late", "done")]
    assert report.stopped is None  # a 404 is this hole's problem, not the exchange's
    state = hole_state(conn, gatherer, "h1-all")
    assert (state["status"], state["attempts"]) == ("pending", 1)
    assert "NotFound" in state["error"] and "404" in state["error"]
    assert stored_trades(conn) == sim_run.in_seconds(T0_S + 2, T0_S + 4)


def test_a_legacy_format_exchange_is_backfilled_exactly(
    tmp_path: Path, conn: Any, gatherer: str
) -> None:
    """`kalshi-data sim --format legacy`: REST trades carry integer cents and whole contracts
    (`yes_price`, `no_price`, `count`) and no `count_fp`; the rows are still exact."""
    with finished_sim(tmp_path, legacy=True, max_events=1200) as run:
        pair = run.busiest(2)
        add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)  # seconds 0..2
        add_hole(conn, gatherer, "h2-pair", start=2.0, end=2.4, markets=pair)  # seconds 1..3
        with client_for(run.sim.api) as client:
            report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
        sample = requests.get(f"{run.sim.api}/markets/trades", params={"limit": 1}, timeout=10)
    trade = sample.json()["trades"][0]
    assert isinstance(trade["count"], int) and isinstance(trade["yes_price"], int)
    assert "count_fp" not in trade
    assert report.outcomes() == {"done": 2, "retry": 0, "failed": 0}, report.holes
    expected = sorted(
        set(run.in_seconds(T0_S, T0_S + 2) + run.in_seconds(T0_S + 1, T0_S + 3, set(pair)))
    )
    assert len(expected) > 50 and all(row[6] % 100 == 0 for row in expected)
    assert stored_trades(conn) == expected
    assert sum(r.inserted for r in report.holes) == len(expected)


def test_exchange_errors_leave_the_hole_pending_then_failed_without_crashing(
    sim_run: SimRun, conn: Any, gatherer: str, database: str
) -> None:
    add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)
    add_hole(conn, gatherer, "h2-later", start=4.6, end=4.8)
    closed = f"http://127.0.0.1:{free_port()}/trade-api/v2"
    settings = Settings(
        gatherer=gatherer,
        database_url=database,
        kalshi=fast_kalshi(closed, max_retries=1),
        backfill=backfill_config(max_attempts=2),
    )
    labels = {"gatherer": gatherer}

    def holes_total(outcome: str) -> float:
        sample = {**labels, "outcome": outcome}
        return REGISTRY.get_sample_value("kd_backfill_holes_total", sample) or 0

    def job_runs(outcome: str) -> float:
        sample = {"job_name": "backfill_trades", "outcome": outcome}
        return REGISTRY.get_sample_value("kd_job_runs_total", sample) or 0

    ok_before = job_runs("ok")
    summary = backfill_trade_holes(settings)  # the job itself: it returns, it does not raise
    assert summary["retry"] == 1 and summary["done"] == 0
    assert "connection refused" in (summary["stopped"] or "")
    first = hole_state(conn, gatherer, "h1-all")
    assert (first["status"], first["attempts"]) == ("pending", 1)
    assert "ExchangeUnreachable" in first["error"] and "connection refused" in first["error"]
    # an exchange-wide failure ends the run: the next hole is not charged an attempt
    second = hole_state(conn, gatherer, "h2-later")
    assert (second["status"], second["attempts"], second["error"]) == ("pending", 0, None)
    assert job_runs("ok") == ok_before + 1
    assert holes_total("retry") == 1 and holes_total("failed") == 0

    summary = backfill_trade_holes(settings)
    assert summary["failed"] == 1
    assert hole_state(conn, gatherer, "h1-all")["status"] == "failed"
    assert holes_total("failed") == 1
    assert REGISTRY.get_sample_value("kd_backfill_pending_holes", labels) == 1
    # a failed hole is left alone; the exchange comes back and the next hole is filled
    recovered = settings.model_copy(update={"kalshi": fast_kalshi(sim_run.sim.api)})
    summary = backfill_trade_holes(recovered)
    assert (summary["done"], summary["failed"], summary["retry"]) == (1, 0, 0)
    assert hole_state(conn, gatherer, "h1-all")["attempts"] == 2
    later = hole_state(conn, gatherer, "h2-later")
    assert later["status"] == "done" and later["trades"] == len(
        sim_run.in_seconds(T0_S + 4, T0_S + 6)
    )
    assert REGISTRY.get_sample_value("kd_backfill_trades_total", labels) == later["trades"]
    assert REGISTRY.get_sample_value("kd_backfill_pending_holes", labels) == 0


def test_a_transient_5xx_is_retried_by_the_client(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)
    sim_run.sim.fault(type="rest_5xx", count=2, status=503)
    with client_for(sim_run.sim.api, max_retries=2) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
    assert report.outcomes()["done"] == 1
    assert stored_trades(conn) == sim_run.in_seconds(T0_S, T0_S + 2)


def test_a_bad_answer_for_one_hole_does_not_stop_the_others(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    """A trade the normalizer refuses is that hole's failure; the run goes on."""
    good, bad = sim_run.busiest(2)
    add_hole(conn, gatherer, "h-bad", start=0.6, end=1.4, markets=[bad])
    add_hole(conn, gatherer, "h-good", start=4.6, end=4.8, markets=[good])
    http = requests.Session()

    def answer(request: Received) -> Reply:
        if request.path.endswith("/historical/cutoff"):
            return Reply(body={"trades_created_ts": None})
        body = http.get(f"{sim_run.sim.api}/markets/trades", params=request.query, timeout=10)
        trades = body.json()
        if request.param("ticker") == bad:
            for trade in trades["trades"]:
                trade["yes_price_dollars"] = "0.5x"
        return Reply(body=trades)

    with ScriptedHttpServer(answer) as server, client_for(server.base_url) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
    outcomes = [(r.hole_id, r.outcome) for r in report.holes]
    assert outcomes == [("h-bad", "retry"), ("h-good", "done")]
    assert report.stopped is None
    assert "FrameError" in hole_state(conn, gatherer, "h-bad")["error"]
    assert stored_trades(conn) == sim_run.in_seconds(T0_S + 4, T0_S + 6, {good})


def test_a_hole_locked_by_another_worker_is_skipped(
    sim_run: SimRun, conn: Any, gatherer: str, database: str
) -> None:
    standard_holes(conn, gatherer, sim_run)
    other = psycopg2.connect(database)
    try:
        with other.cursor() as cur:  # another job worker in the middle of H1
            cur.execute(
                "SELECT 1 FROM capture_holes WHERE hole_id = 'h1-all' FOR UPDATE SKIP LOCKED"
            )
            assert cur.fetchall() == [(1,)]
        with client_for(sim_run.sim.api) as client:
            report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
        assert report.skipped == ["h1-all"]
        assert [r.hole_id for r in report.holes] == ["h2-pair"]
        assert hole_state(conn, gatherer, "h1-all")["attempts"] == 0
    finally:
        other.rollback()
        other.close()
    with client_for(sim_run.sim.api) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
    assert [r.hole_id for r in report.holes] == ["h1-all"]
    assert hole_state(conn, gatherer, "h1-all")["status"] == "done"


def test_only_holes_past_the_settle_time_and_only_this_gatherer(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    add_hole(conn, gatherer, "h1-all", start=0.6, end=1.4)
    add_hole(conn, "someone-else", "h1-all", start=0.6, end=1.4)
    recent = datetime.now(UTC)
    with conn.cursor() as cur:  # a hole that closed just now: the exchange may still be behind
        cur.execute(
            "INSERT INTO capture_holes (gatherer, hole_id, channel, cause, from_at, to_at, "
            "backfill_status) VALUES (%s, 'h-now', 'trade', 'disconnect', %s, %s, 'pending')",
            (gatherer, recent, recent),
        )
    conn.commit()
    config = backfill_config(settle_s=60, holes_per_run=5)
    with client_for(sim_run.sim.api) as client:
        report = backfill_trades(conn, client, config, gatherer=gatherer)
    assert [r.hole_id for r in report.holes] == ["h1-all"]
    assert hole_state(conn, gatherer, "h-now")["status"] == "pending"
    assert hole_state(conn, "someone-else", "h1-all")["status"] == "pending"
    assert report.pending == 1
    # the trades of a day with no partition went into a partition made for it, not DEFAULT
    day = at(0).strftime("%Y%m%d")
    assert report.partitions_created == [f"trades_p{day}"]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM trades_default")
        assert cur.fetchone() == (0,)
    conn.commit()


def test_a_hole_reaching_before_the_simulators_cutoff_is_still_filled(
    sim_run: SimRun, conn: Any, gatherer: str
) -> None:
    """The simulator's default cutoff is its epoch: `/historical/trades` answers the part of
    a window before its first instant (empty: nothing is older), the rest is filled as usual."""
    add_hole(conn, gatherer, "h-early", start=-2.0, end=0.4, cause="not_subscribed")
    with client_for(sim_run.sim.api) as client:
        report = backfill_trades(conn, client, backfill_config(), gatherer=gatherer)
    assert report.outcomes()["done"] == 1, report.holes
    assert report.holes[0].queries == 2  # historical (empty) + live
    expected = sim_run.in_seconds(T0_S, T0_S + 1)
    assert stored_trades(conn) == expected and expected
    assert hole_state(conn, gatherer, "h-early")["trades"] == len(expected)
