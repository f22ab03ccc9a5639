"""`kalshi-data deadletters list|show|redrive` end to end: real ingest makes the dead letters
(real PostgreSQL and Redis), the installed entry point reads and redrives them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from app.config import Settings, StreamSettings
from app.db.migrations import upgrade
from app.ingest import close_all, run_drain, stream_names
from app.streams import Frame, encode_entry
from tests.conftest import run_cli
from tests.ingest.conftest import publish, query
from tests.normalize import examples

REDIS_URL = "redis://127.0.0.1:6379/12"
WEIRD = b'{"type": "weird\x1b[31m", "sid": 1, "msg": {}}'  # an escape sequence in the bytes
MALFORMED = b'{"type": "trade", "msg": {'


def trade(trade_id: str, price: str) -> bytes:
    frame = json.loads(examples.TRADE)
    frame["msg"]["trade_id"] = trade_id
    frame["msg"]["yes_price_dollars"] = price
    return json.dumps(frame).encode()


PRICEY = trade("pricey", "0.9500")


@pytest.fixture
def settings(scratch_database: str, tmp_path: Path) -> Iterator[Settings]:
    upgrade(scratch_database)
    gatherer = f"t{uuid.uuid4().hex[:12]}"
    yield Settings(
        gatherer=gatherer,
        database_url=scratch_database,
        redis_url=REDIS_URL,
        streams=StreamSettings(
            book_partitions=2, batch_interval_ms=20, high_water_memory_bytes=0,
            journal_dir=tmp_path / "journal",
        ),
    )  # fmt: skip
    close_all()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"kd:{gatherer}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    done = run_cli(
        "deadletters",
        *args,
        KD_DATABASE_URL=settings.database_url,
        KD_REDIS_URL=settings.redis_url,
        KD_GATHERER=settings.gatherer,
        KD_STREAMS__BOOK_PARTITIONS="2",
    )
    return done.returncode, done.stdout, done.stderr


def cli_json(settings: Settings, *args: str) -> object:
    code, out, err = cli(settings, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def make_dead_letters(settings: Settings, tmp_path: Path) -> str:
    """A trade the database refuses (a CHECK), a malformed and an unsupported frame, and a
    corrupt entry; returns the dead-letter stream id of the corrupt entry."""
    url = settings.database_url
    names = stream_names(settings)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE trades ADD CONSTRAINT test_cheap CHECK (yes_price < 900000)")
    conn.close()
    now = time.time_ns()
    publish(
        settings,
        [
            (names.trade, Frame(trade("fine", "0.3600"), now, "conn-t", 11)),
            (names.trade, Frame(PRICEY, now + 1, "conn-t", 11)),
            (names.trade, Frame(MALFORMED, now + 2, "conn-t")),
            (names.other, Frame(WEIRD, now + 3, "conn-o")),
        ],
        tmp_path / "j",
    )
    corrupt = encode_entry([Frame(b"x", now + 4, "conn-c")])
    corrupt[b"d"] = corrupt[b"d"][:-1] + b"?"
    client = redis.Redis.from_url(REDIS_URL)
    client.xadd(names.ticker, corrupt)  # type: ignore[arg-type]
    for stream in (names.trade, names.other, names.ticker):
        assert run_drain(settings, stream).drain.error is None
    ((dead_id, _),) = client.xrange(names.dead)
    client.close()
    return dead_id.decode()


def test_list_show_and_redrive(settings: Settings, tmp_path: Path) -> None:
    dead_id = make_dead_letters(settings, tmp_path)
    url = settings.database_url

    # the corrupt entry is still only in the stream
    stream_docs = cli_json(settings, "list", "--source", "stream")
    assert [d["id"] for d in stream_docs] == [dead_id]  # type: ignore[index, union-attr]
    assert "checksum mismatch" in stream_docs[0]["reason"]  # type: ignore[index]
    shown = cli_json(settings, "show", dead_id, "--raw", "hex")
    assert shown["envelope_error"] == "checksum mismatch"  # type: ignore[index, call-overload]

    assert run_drain(settings, stream_names(settings).dead).drain.handled == 1  # to the table
    docs = cli_json(settings, "list")
    assert sorted(d["stage"] for d in docs) == ["envelope", "normalize", "normalize", "write"]  # type: ignore[index, union-attr]
    (write,) = cli_json(settings, "list", "--stage", "write")  # type: ignore[misc]
    assert "test_cheap" in write["reason"]
    assert cli_json(settings, "list", "--reason", "TEST_CHEAP") == [write]
    assert cli_json(settings, "list", "--since", "1h", "--limit", "1") == docs[:1]  # type: ignore[index]

    code, out, err = cli(settings, "show", write["id"], "--raw", "base64", "--json")
    assert code == 0, err
    assert base64.b64decode(json.loads(out)["raw"]) == PRICEY
    (weird,) = [d for d in docs if d["stream"] == stream_names(settings).other]  # type: ignore[union-attr, index]
    code, out, err = cli(settings, "show", weird["id"])
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b[31m" in out  # escaped, never sent to the terminal
    assert f"id: {weird['id']}" in out

    # the fix: the constraint goes; a dry run writes nothing
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE trades DROP CONSTRAINT test_cheap")
    conn.close()
    dry = cli_json(settings, "redrive", "--all", "--dry-run")
    assert dry["summary"] == {"redriven": 1, "still_failing": 2, "skipped": 0}  # type: ignore[index, call-overload]
    assert query(url, "SELECT trade_id FROM trades ORDER BY 1") == [("fine",)]
    assert query(url, "SELECT count(*) FROM dead_letters WHERE stage = 'redriven'") == [(0,)]

    code, out, err = cli(settings, "redrive", "--all")
    assert code == 0, err
    assert f"{write['id']}  redriven       trades+1" in out
    assert out.strip().endswith("redriven 1, still failing 2, skipped 0")
    assert query(url, "SELECT trade_id FROM trades ORDER BY 1") == [("fine",), ("pricey",)]
    stage, reason = query(url, "SELECT stage, reason FROM dead_letters WHERE raw = %s", PRICEY)[0]
    assert stage == "redriven" and "from stage write: 1 new rows" in str(reason)

    # twice: nothing selected, nothing stored twice; by id it is skipped
    again = cli_json(settings, "redrive", "--all")
    assert again["summary"] == {"redriven": 0, "still_failing": 2, "skipped": 0}  # type: ignore[index, call-overload]
    by_id = cli_json(settings, "redrive", write["id"])
    assert by_id["outcomes"][0]["status"] == "skipped"  # type: ignore[index, call-overload]
    assert query(url, "SELECT count(*) FROM trades") == [(2,)]


def test_bad_arguments_exit_2(settings: Settings) -> None:
    cases = [
        (("show", "nope"), "is not a dead letter id"),
        (("show", "dl-000000000000"), "no dead letter dl-000000000000"),
        (("redrive",), "say which dead letters to redrive"),
        (("redrive", "1-0"), "is not a dead_letters id"),
        (("redrive", "dl-000000000000", "--all"), "not both"),
        (("list", "--since", "last tuesday"), "is not a time"),
        (("list", "--limit", "0"), "--limit"),
        (("list", "--source", "stream", "--stage", "write"), "--stage applies to the table"),
    ]
    for args, message in cases:
        code, out, err = cli(settings, *args)
        assert code == 2, (args, out, err)
        assert message in err and err.startswith("error: "), (args, err)
        assert "Traceback" not in err


def test_unreachable_database_is_one_clear_error(settings: Settings) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/x"})
    code, _, err = cli(broken, "list")
    assert code == 2 and err.startswith("error: cannot connect") and "hint:" in err
