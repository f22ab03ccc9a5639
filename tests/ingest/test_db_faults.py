"""Database faults versus a frame's own fault, on real PostgreSQL and Redis (docs/ingest.md).

A database fault (read-only, permission denied, missing table, a statement stuck on a lock
past statement_timeout, ...) never dead-letters anything however often it repeats: the entries
stay pending, the fault is counted and the gatherer's drains back off; once the database is
healthy again every frame is stored exactly once. A row the database refuses for its values
is the frame's fault: that frame alone becomes a dead letter and its batch is stored.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
import redis
from prometheus_client import REGISTRY

from app.config import Settings
from app.ingest import close_all, run_drain, stream_names
from app.ingest.backoff import DatabaseBackoff, backoff_key
from app.ingest.faults import fault_kind
from app.ingest.runner import database, session_limits
from app.streams import Frame, encode_entry, parse_dead_letter
from tests.ingest.conftest import publish, query
from tests.normalize import examples

MALFORMED = b'{"type": "trade", "sid": 11, "msg": {"trade_id": '


def trade(trade_id: str, price: str = "0.3600") -> bytes:
    frame = json.loads(examples.TRADE)
    frame["msg"]["trade_id"] = trade_id
    frame["msg"]["yes_price_dollars"] = price
    return json.dumps(frame).encode()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def faulty(settings: Settings, **streams: object) -> Settings:
    """Fast retries, a short statement timeout, and `max_deliveries` 1: if a database fault
    could ever dead-letter an entry, it would here."""
    update = {
        "db_retry_min_s": 0.05,
        "db_retry_max_s": 0.2,
        "db_statement_timeout_ms": 500,
        "max_deliveries": 1,
        "min_idle_ms": 0,
    }
    update.update(streams)
    return settings.model_copy(update={"streams": settings.streams.model_copy(update=update)})


def publish_trades(settings: Settings, tmp_path: Path, count: int = 3) -> list[Frame]:
    """`count` trade entries (a trade and a malformed frame each) on the trade stream."""
    names = stream_names(settings)
    now = time.time_ns()
    frames = []
    for i in range(count):
        frames.append(Frame(trade(f"trade-{i}"), now + 2 * i, "conn-t", 11, None))
        frames.append(Frame(MALFORMED, now + 2 * i + 1, "conn-t", None, None))
    for i in range(count):  # one XADD batch per pair: several entries
        publish(settings, [(names.trade, f) for f in frames[2 * i : 2 * i + 2]], tmp_path / f"j{i}")
    return frames


def pending_counts(client: redis.Redis, settings: Settings) -> list[int]:
    names = stream_names(settings)
    rows = client.xpending_range(names.trade, settings.streams.group, "-", "+", 100)
    return [int(p["times_delivered"]) for p in rows]


def inflate_deliveries(client: redis.Redis, settings: Settings, times: int) -> None:
    """Deliver every entry `times` times without an ack, as workers killed mid-write would."""
    names = stream_names(settings)
    group = settings.streams.group
    client.xgroup_create(names.trade, group, id="0", mkstream=True)
    client.xreadgroup(group, "killed:1", {names.trade: ">"}, count=100)
    ids = [p["message_id"] for p in client.xpending_range(names.trade, group, "-", "+", 100)]
    for _ in range(times - 1):
        client.xclaim(names.trade, group, "killed:1", 0, ids)


def drain_while_broken(settings: Settings, attempts: int = 4) -> list[str]:
    """Drain repeatedly while the database is broken; the errors the runs reported."""
    names = stream_names(settings)
    errors = []
    for _ in range(attempts):
        run = run_drain(settings, names.trade)
        assert run.drain.handled == 0 and run.drain.dead_lettered == 0, run.as_dict()
        if run.drain.error is not None:
            assert run.drain.transient, run.drain.error
            errors.append(run.drain.error)
        time.sleep(settings.streams.db_retry_max_s + 0.05)
    return errors


def drain_until_done(settings: Settings) -> None:
    names = stream_names(settings)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        run = run_drain(settings, names.trade)
        if run.drain.exhausted and run.drain.error is None and run.drain.paused_s == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the trade stream did not drain after the database recovered")


def assert_complete(settings: Settings, client: redis.Redis, count: int = 3) -> None:
    """Every frame stored exactly once; the only dead letters are the malformed frames."""
    url = settings.database_url
    names = stream_names(settings)
    trades = query(url, "SELECT trade_id FROM trades ORDER BY trade_id")
    assert [t for (t,) in trades] == [f"trade-{i}" for i in range(count)]
    assert query(url, "SELECT count(*) FROM raw_frames") == [(2 * count,)]
    dead = query(url, "SELECT stage FROM dead_letters")
    assert dead == [("normalize",)] * count  # the frames' own fault, nothing else
    assert client.xlen(names.dead) == 0
    assert pending_counts(client, settings) == []
    assert client.exists(backoff_key(settings.gatherer)) == 0


def run_fault_scenario(
    settings: Settings,
    client: redis.Redis,
    tmp_path: Path,
    *,
    kind: str,
    breaks: Callable[[], None],
    heals: Callable[[], None],
    inflate: int = 0,
    stored: Callable[[], int] | None = None,
) -> list[str]:
    publish_trades(settings, tmp_path)
    if inflate:
        inflate_deliveries(client, settings, inflate)
    before = metric("kd_ingest_db_errors_total", gatherer=settings.gatherer, kind=kind)
    breaks()
    errors = drain_while_broken(settings)
    assert errors, "no drain reached the database"
    counted = metric("kd_ingest_db_errors_total", gatherer=settings.gatherer, kind=kind) - before
    assert counted >= 1
    assert client.xlen(stream_names(settings).dead) == 0  # nothing dead-lettered
    if stored is None:
        assert query(settings.database_url, "SELECT count(*) FROM raw_batches") == [(0,)]
    else:
        assert stored() == 0
    # every entry still pending, delivery counts not grown by the fault
    assert len(pending_counts(client, settings)) == 3
    assert max(pending_counts(client, settings)) <= max(inflate, 1)
    heals()
    time.sleep(settings.streams.db_retry_max_s + 0.05)
    drain_until_done(settings)
    assert_complete(settings, client)
    assert metric("kd_ingest_db_retry_delay_seconds", gatherer=settings.gatherer) == 0
    return errors


def admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


# -- the four database faults ----------------------------------------------------------------


def test_read_only_database_never_dead_letters_even_inflated_entries(
    settings: Settings, client: redis.Redis, tmp_path: Path, postgres_admin_url: str
) -> None:
    """Entries delivered 6 times already (killed workers) and max_deliveries 1: today's poison
    rule would dead-letter them unread; a read-only database must not make them poison."""
    settings = faulty(settings)
    name = settings.database_url.rsplit("/", 1)[1]

    def breaks() -> None:
        admin(postgres_admin_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        close_all()  # new sessions pick the setting up, as after a failover to a replica

    def heals() -> None:
        admin(postgres_admin_url, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')

    errors = run_fault_scenario(
        settings, client, tmp_path, kind="read_only", breaks=breaks, heals=heals, inflate=6
    )
    assert any("ReadOnlySqlTransaction" in e for e in errors), errors


@pytest.fixture
def writer_role(database: str, postgres_admin_url: str) -> Iterator[str]:
    """A non-superuser role with every privilege on the scratch database's tables."""
    role = f"kd_writer_{uuid.uuid4().hex[:8]}"
    admin(postgres_admin_url, f"CREATE ROLE {role} LOGIN")
    admin(
        database,
        f"GRANT USAGE ON SCHEMA public TO {role}; "
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; "
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    yield role
    close_all()
    admin(database, f"DROP OWNED BY {role}")
    admin(postgres_admin_url, f"DROP ROLE {role}")


def test_permission_denied_keeps_entries_pending(
    settings: Settings, client: redis.Redis, tmp_path: Path, writer_role: str
) -> None:
    owner_url = settings.database_url
    role_url = owner_url.replace("://postgres@", f"://{writer_role}@")
    settings = faulty(settings).model_copy(update={"database_url": role_url})

    errors = run_fault_scenario(
        settings,
        client,
        tmp_path,
        kind="permission",
        breaks=lambda: admin(owner_url, f"REVOKE INSERT ON trades FROM {writer_role}"),
        heals=lambda: admin(owner_url, f"GRANT INSERT ON trades TO {writer_role}"),
    )
    assert any("InsufficientPrivilege" in e for e in errors), errors


def test_missing_table_keeps_entries_pending_then_stores_them_once(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    settings = faulty(settings)
    url = settings.database_url
    errors = run_fault_scenario(
        settings,
        client,
        tmp_path,
        kind="missing_object",
        breaks=lambda: admin(url, "ALTER TABLE trades RENAME TO trades_moved"),
        heals=lambda: admin(url, "ALTER TABLE trades_moved RENAME TO trades"),
    )
    assert any("UndefinedTable" in e for e in errors), errors


def test_hung_write_times_out_and_is_retried(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    """A lock held by someone else: the write waits statement_timeout, then it is a fault."""
    settings = faulty(settings, db_statement_timeout_ms=300)
    holder = psycopg2.connect(settings.database_url)
    released = threading.Event()

    def breaks() -> None:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE raw_batches IN ACCESS EXCLUSIVE MODE")

    def heals() -> None:
        holder.rollback()
        released.set()

    def stored() -> int:  # asked through the lock holder: anyone else would wait
        with holder.cursor() as cur:
            cur.execute("SELECT count(*) FROM raw_batches")
            return int(cur.fetchone()[0])  # type: ignore[index]

    try:
        started = time.monotonic()
        errors = run_fault_scenario(
            settings, client, tmp_path, kind="timeout", breaks=breaks, heals=heals, stored=stored
        )
        assert time.monotonic() - started < 30
    finally:
        holder.close()
    assert released.is_set()
    assert any("QueryCanceled" in e for e in errors), errors


# -- the session, the classification, the backoff ---------------------------------------------


def test_ingest_sessions_have_statement_timeout_and_keepalives(settings: Settings) -> None:
    settings = faulty(settings, db_statement_timeout_ms=1234, db_keepalives_idle_s=17)
    conn = database(settings.database_url, session_limits(settings))
    with conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone() == ("1234ms",)
    conn.rollback()
    params = conn.get_dsn_parameters()
    assert params["keepalives"] == "1"
    assert params["keepalives_idle"] == "17"
    assert params["keepalives_interval"] == "10"
    assert params["keepalives_count"] == "3"


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT 1 / 0", None),  # 22012: a value's fault
        ("INSERT INTO markets (ticker) VALUES (NULL)", None),  # 23502
        ("SELECT * FROM no_such_table", "missing_object"),
        ("SELECT no_such_column FROM trades", "missing_object"),
        ("SET LOCAL statement_timeout = 50; SELECT pg_sleep(1)", "timeout"),
        ("SET TRANSACTION READ ONLY; INSERT INTO series (ticker) VALUES ('x')", "read_only"),
        ("SELEC 1", "other"),  # our SQL is wrong: no entry is to blame
    ],
)
def test_fault_kind_of_real_errors(database: str, statement: str, kind: str | None) -> None:
    conn = psycopg2.connect(database)
    try:
        with pytest.raises(psycopg2.Error) as caught, conn.cursor() as cur:
            cur.execute(statement)
        assert fault_kind(caught.value) == kind
    finally:
        conn.close()
    conn.close()
    with pytest.raises(psycopg2.InterfaceError) as closed, conn.cursor():
        pass
    assert fault_kind(closed.value) == "connection"


def test_backoff_doubles_up_to_its_cap_and_clears(client: redis.Redis, gatherer: str) -> None:
    gate = DatabaseBackoff(client, gatherer, 0.05, 0.15)
    assert gate.check().remaining_s == 0
    first = gate.record_fault("connection", "down")
    assert (first.failures, first.remaining_s) == (1, 0.05)
    again = gate.record_fault("connection", "down")  # another worker, same outage
    assert again.failures == 1 and 0 < again.remaining_s <= 0.05
    assert 0 < gate.check().remaining_s <= 0.05
    pauses = []
    for _ in range(3):
        time.sleep(gate.check().remaining_s + 0.01)
        pauses.append(gate.record_fault("connection", "down").remaining_s)
    assert pauses == [0.1, 0.15, 0.15]
    assert gate.clear() and gate.check().remaining_s == 0 and not gate.clear()


# -- a frame's own fault ------------------------------------------------------------------------


def test_refused_row_dead_letters_only_its_frame(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    """The database refuses one trade for its value (a CHECK): that frame is dead-lettered
    (stage write) and its neighbours in the same entry and batch are stored at once; an entry
    whose raw batch itself is refused goes whole to the dead-letter stream."""
    settings = faulty(settings, max_deliveries=5)
    url = settings.database_url
    names = stream_names(settings)
    admin(url, "ALTER TABLE trades ADD CONSTRAINT test_cheap CHECK (yes_price < 900000)")
    admin(url, "ALTER TABLE raw_batches ADD CONSTRAINT test_honest CHECK (publisher <> 'evil')")
    now = time.time_ns()
    good, pricey = trade("ok-1"), trade("pricey", "0.9500")
    publish(
        settings,
        [
            (names.trade, Frame(good, now, "conn-t", 11)),
            (names.trade, Frame(pricey, now + 1, "conn-t", 11)),
            (names.trade, Frame(MALFORMED, now + 2, "conn-t")),
        ],
        tmp_path / "j",
    )
    evil = encode_entry([Frame(trade("evil-1"), now + 3, "conn-t", 11)])
    evil[b"p"], evil[b"q"] = b"evil", b"1"
    evil_id = client.xadd(names.trade, evil).decode()  # type: ignore[arg-type]
    publish(settings, [(names.trade, Frame(trade("ok-2"), now + 4, "conn-t", 11))], tmp_path / "k")
    rejected = metric("kd_dead_letters_total", reason_class="rejected_row")

    run = run_drain(settings, names.trade)

    assert run.drain.error is None and run.drain.exhausted, run.as_dict()
    assert (run.drain.handled, run.drain.dead_lettered) == (2, 1)
    assert [t for (t,) in query(url, "SELECT trade_id FROM trades ORDER BY 1")] == ["ok-1", "ok-2"]
    assert query(url, "SELECT count(*) FROM raw_frames") == [(4,)]  # the evil entry's excepted
    dead = query(url, "SELECT stage, reason, raw, batch_pos FROM dead_letters ORDER BY batch_pos")
    assert [(stage, bytes(raw), pos) for stage, _, raw, pos in dead] == [  # type: ignore[arg-type]
        ("write", pricey, 1),
        ("normalize", MALFORMED, 2),
    ]
    assert "23514" in str(dead[0][1]) and "test_cheap" in str(dead[0][1])
    assert metric("kd_dead_letters_total", reason_class="rejected_row") == rejected + 1
    ((_, fields),) = client.xrange(names.dead)
    letter = parse_dead_letter(fields)
    assert (letter.source_id, letter.deliveries) == (evil_id, 1)
    assert "test_honest" in letter.reason and letter.fields == evil
    assert pending_counts(client, settings) == []

    again = run_drain(settings.model_copy(), names.trade)  # nothing left, nothing doubled
    assert again.drain.handled == 0
    assert query(url, "SELECT count(*) FROM dead_letters") == [(2,)]
