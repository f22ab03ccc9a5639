"""`kalshi-data deadletters list|show|redrive`: inspect and retry dead letters.

Dead letters live in two places: the gatherer's `dead_letters` table (frames that could not be
normalized or stored, and whole entries copied from the dead-letter stream) and, until the
dead-letter drain has copied them (every 10 s), the dead-letter stream `kd:{g}:dead`. `list`
and `show` read both (`--source`); `redrive` works on the table (app.ingest.redrive). Every
expected failure (bad id or time, unreachable or unmigrated database, Redis down) is one
`error:` line, a `hint:` line and exit 2. Raw bytes are never written to the terminal as is.
See docs/deadletters.md.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import psycopg2
import redis

from app.cli.coverage import parse_time
from app.cli.errors import EXIT_USAGE, UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.db.engine import DatabaseUnavailable, connect, first_line
from app.ingest.faults import describe
from app.ingest.redrive import (
    ID_PREFIX,
    RedriveOutcome,
    Selection,
    StoredDeadLetter,
    redrive_one,
    select_dead_letters,
)
from app.ingest.runner import format_version
from app.streams import StreamNames, decode_entry, parse_dead_letter
from app.streams.envelope import EnvelopeError

_DB_HINT = "check --database-url (or KD_DATABASE_URL / database_url) and that PostgreSQL is running"
_REDIS_HINT = "check redis_url (or KD_REDIS_URL) and that Redis is running"
_ID_HINT = (
    f"ids look like {ID_PREFIX}0123456789ab (table) or 1733200000000-0 (stream); "
    "'kalshi-data deadletters list' shows them"
)
_TABLE_ID = re.compile(rf"^{ID_PREFIX}[0-9a-f]{{12}}$")
_STREAM_ID = re.compile(r"^\d+-\d+$")
RAW_FORMATS = ("text", "hex", "base64")


def safe_text(raw: bytes) -> str:
    """Bytes shown on a terminal: UTF-8 where valid, every control byte and invalid byte
    escaped (\\n, \\x1b, ...), so a frame can never move the cursor or inject anything."""
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def render_raw(raw: bytes, fmt: str) -> str:
    if fmt == "hex":
        return raw.hex()
    if fmt == "base64":
        return base64.b64encode(raw).decode("ascii")
    return safe_text(raw)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _from_ns(ns: int) -> str:
    return _stamp(datetime.fromtimestamp(ns / 1e9, UTC))


def _one_line(text: str, width: int = 90) -> str:
    line = safe_text(text.encode())
    return line if len(line) <= width else line[: width - 1] + "…"


@contextmanager
def _database(ctx: CliContext, url: str | None) -> Iterator[Any]:
    try:
        conn = connect(url or ctx.settings.database_url)
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT, exit_code=EXIT_USAGE) from exc
    try:
        yield conn
    except psycopg2.errors.UndefinedTable as exc:
        raise UserFacingError(
            f"the database has no dead_letters table ({first_line(exc)})",
            "run 'kalshi-data migrate' on that database",
            exit_code=EXIT_USAGE,
        ) from exc
    except psycopg2.Error as exc:
        raise UserFacingError(
            f"database error: {describe(exc)}", _DB_HINT, exit_code=EXIT_USAGE
        ) from exc
    finally:
        conn.close()


@contextmanager
def _redis(ctx: CliContext) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(
        ctx.settings.redis_url, decode_responses=False, socket_timeout=5, socket_connect_timeout=5
    )
    try:
        yield client
    except redis.RedisError as exc:
        raise UserFacingError(f"Redis error: {exc}", _REDIS_HINT, exit_code=EXIT_USAGE) from exc
    finally:
        client.close()


def _times(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(UTC)
    start = parse_time(since, "--since", now) if since else None
    end = parse_time(until, "--until", now) if until else None
    if start is not None and end is not None and start >= end:
        raise UserFacingError(
            f"--since {_stamp(start)} is not before --until {_stamp(end)}",
            "give a --since earlier than --until",
            exit_code=EXIT_USAGE,
        )
    return start, end


def letter_document(letter: StoredDeadLetter, raw_format: str | None = None) -> dict[str, Any]:
    row = letter.row
    doc: dict[str, Any] = {
        "id": letter.id,
        "source": "table",
        "gatherer": row.gatherer,
        "received_at": _stamp(row.received_at),
        "stage": row.stage,
        "reason": row.reason,
        "stream": row.stream,
        "entry_id": row.entry_id,
        "connection_id": row.connection_id,
        "received_ns": row.received_ns,
        "batch_pos": row.batch_pos,
        "sid": row.sid,
        "seq": row.seq,
        "msg_type": row.msg_type,
        "raw_bytes": len(row.raw),
    }
    if raw_format is not None:
        doc["raw_format"] = raw_format
        doc["raw"] = render_raw(row.raw, raw_format)
    return doc


def stream_document(
    entry_id: str, fields: dict[bytes, bytes], raw_format: str | None = None
) -> dict[str, Any]:
    letter = parse_dead_letter(fields)
    doc: dict[str, Any] = {
        "id": entry_id,
        "source": "stream",
        "at": _from_ns(letter.at_ns) if letter.at_ns else None,
        "reason": letter.reason,
        "stream": letter.source_stream,
        "entry_id": letter.source_id,
        "deliveries": letter.deliveries,
        "consumer": letter.consumer,
        "fields": sorted(name.decode("utf-8", "backslashreplace") for name in letter.fields),
    }
    if raw_format is not None:
        try:
            frames = decode_entry(letter.fields)
        except EnvelopeError as exc:
            doc["envelope_error"] = exc.reason
            doc["raw_format"] = raw_format
            doc["raw"] = render_raw(letter.fields.get(b"d", b""), raw_format)
        else:
            doc["raw_format"] = raw_format
            doc["frames"] = [
                {
                    "batch_pos": pos,
                    "connection_id": frame.conn_id,
                    "received_ns": frame.recv_ns,
                    "sid": frame.sid,
                    "seq": frame.seq,
                    "raw": render_raw(frame.raw, raw_format),
                }
                for pos, frame in enumerate(frames)
            ]
    return doc


@cli.group("deadletters")
def deadletters() -> None:
    """Dead letters: frames and stream entries ingest could not store (docs/deadletters.md)."""


_gatherer = click.option("--gatherer", metavar="G", help="Gatherer (default: settings).")
_database_url = click.option("--database-url", metavar="URL", help="Database (default: settings).")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_since = click.option("--since", "since_text", metavar="TIME", help="Only from this time on.")
_until = click.option("--until", "until_text", metavar="TIME", help="Only before this time.")
_stage = click.option("--stage", metavar="STAGE", help="Only this stage (normalize, write, ...).")
_reason = click.option("--reason", metavar="TEXT", help="Only reasons containing TEXT.")


@deadletters.command("list")
@_gatherer
@_database_url
@click.option(
    "--source",
    type=click.Choice(["table", "stream"]),
    default="table",
    show_default=True,
    help="The dead_letters table, or the dead-letter stream (entries not copied yet).",
)
@_stage
@_reason
@_since
@_until
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@_json
@pass_cli_context
def list_command(
    ctx: CliContext,
    gatherer: str | None,
    database_url: str | None,
    source: str,
    stage: str | None,
    reason: str | None,
    since_text: str | None,
    until_text: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Dead letters, newest first. Times: ISO 8601, 'now', or a time ago (90m, 6h, 2d)."""
    since, until = _times(since_text, until_text)
    name = gatherer or ctx.settings.gatherer
    if source == "stream":
        if stage is not None:
            raise UserFacingError(
                "--stage applies to the table only", "drop --stage or use --source table", 2
            )
        docs = _stream_letters(ctx, name, reason, since, until, limit)
        if as_json:
            click.echo(json.dumps(docs, indent=2))
            return
        for doc in docs:
            click.echo(
                f"{doc['id']:<20}  {doc['at'] or '-':<27}  {doc['stream']:<22}  "
                f"{doc['entry_id']:<18}  {_one_line(doc['reason'])}"
            )
        click.echo(f"{len(docs)} dead letter(s) in the stream of gatherer {name}")
        return
    selection = Selection(name, stage=stage, reason=reason, since=since, until=until, limit=limit)
    with _database(ctx, database_url) as conn:
        letters = select_dead_letters(conn, selection)
    if as_json:
        click.echo(json.dumps([letter_document(letter) for letter in letters], indent=2))
        return
    for letter in letters:
        row = letter.row
        click.echo(
            f"{letter.id}  {_stamp(row.received_at):<32}  {row.stage:<9}  "
            f"{row.stream or '-':<22}  {len(row.raw):>6} B  {_one_line(row.reason)}"
        )
    click.echo(f"{len(letters)} dead letter(s) of gatherer {name}")


def _stream_letters(
    ctx: CliContext,
    gatherer: str,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    dead = StreamNames(gatherer, ctx.settings.streams.book_partitions).dead
    docs: list[dict[str, Any]] = []
    with _redis(ctx) as client:
        start = "+"
        while len(docs) < limit:
            page: Any = client.xrevrange(dead, start, "-", count=200)
            if not page:
                break
            for entry_id, fields in page:
                doc = stream_document(entry_id.decode(), dict(fields))
                at = parse_dead_letter(dict(fields)).at_ns
                when = datetime.fromtimestamp(at / 1e9, UTC) if at else None
                if reason is not None and reason.lower() not in doc["reason"].lower():
                    continue
                if since is not None and (when is None or when < since):
                    continue
                if until is not None and (when is None or when >= until):
                    continue
                docs.append(doc)
                if len(docs) == limit:
                    break
            start = "(" + page[-1][0].decode()
    return docs


@deadletters.command("show")
@click.argument("letter_id", metavar="ID")
@_gatherer
@_database_url
@click.option(
    "--raw",
    "raw_format",
    type=click.Choice(RAW_FORMATS),
    default="text",
    show_default=True,
    help="How to print the raw bytes: escaped text, hex or base64.",
)
@_json
@pass_cli_context
def show_command(
    ctx: CliContext,
    letter_id: str,
    gatherer: str | None,
    database_url: str | None,
    raw_format: str,
    as_json: bool,
) -> None:
    """One dead letter with its raw bytes (a table id dl-..., or a stream entry id)."""
    name = gatherer or ctx.settings.gatherer
    if _STREAM_ID.match(letter_id):
        dead = StreamNames(name, ctx.settings.streams.book_partitions).dead
        with _redis(ctx) as client:
            found: Any = client.xrange(dead, letter_id, letter_id)
        if not found:
            raise UserFacingError(
                f"no entry {letter_id} in {dead}", "it may be copied and trimmed already", 2
            )
        doc = stream_document(letter_id, dict(found[0][1]), raw_format)
    elif _TABLE_ID.match(letter_id):
        with _database(ctx, database_url) as conn:
            letters = select_dead_letters(conn, Selection(name, ids=(letter_id,), limit=None))
        if not letters:
            raise UserFacingError(
                f"no dead letter {letter_id} for gatherer {name}", _ID_HINT, exit_code=EXIT_USAGE
            )
        doc = letter_document(letters[0], raw_format)
    else:
        raise UserFacingError(f"{letter_id!r} is not a dead letter id", _ID_HINT, EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        if key == "frames":
            for frame in value:
                click.echo(
                    f"frame {frame['batch_pos']}: {frame['connection_id']} "
                    f"{frame['received_ns']} sid={frame['sid']} seq={frame['seq']}"
                )
                click.echo(f"  {frame['raw']}")
        elif key == "reason":
            click.echo(f"{key}: {safe_text(str(value).encode())}")
        else:
            click.echo(f"{key}: {value}")


@deadletters.command("redrive")
@click.argument("letter_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "redrive_all", is_flag=True, help="Every redrivable dead letter.")
@_gatherer
@_database_url
@_stage
@_reason
@_since
@_until
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (newest first).")
@click.option("--dry-run", is_flag=True, help="Say what would be stored; write nothing.")
@_json
@pass_cli_context
def redrive_command(
    ctx: CliContext,
    letter_ids: tuple[str, ...],
    redrive_all: bool,
    gatherer: str | None,
    database_url: str | None,
    stage: str | None,
    reason: str | None,
    since_text: str | None,
    until_text: str | None,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Normalize dead letters again with the current mappers and store their rows.

    Select them by ID, or by filters (--stage, --reason, --since, --until), or --all. Each
    one redriven is marked (stage 'redriven'), so a second run stores nothing twice; one that
    still fails is left as it is. Stage 'envelope' dead letters cannot be redriven.
    """
    for letter_id in letter_ids:
        if not _TABLE_ID.match(letter_id):
            raise UserFacingError(
                f"{letter_id!r} is not a dead_letters id",
                "redrive takes ids of the table (dl-...); a stream entry is copied there first",
                exit_code=EXIT_USAGE,
            )
    filtered = any(v is not None for v in (stage, reason, since_text, until_text))
    if not letter_ids and not filtered and not redrive_all:
        raise UserFacingError(
            "say which dead letters to redrive",
            "give IDs, filters (--stage, --reason, --since, --until) or --all",
            exit_code=EXIT_USAGE,
        )
    if letter_ids and (filtered or redrive_all):
        raise UserFacingError(
            "give either IDs or filters / --all, not both", None, exit_code=EXIT_USAGE
        )
    since, until = _times(since_text, until_text)
    name = gatherer or ctx.settings.gatherer
    selection = Selection(
        name,
        ids=letter_ids,
        stage=stage,
        reason=reason,
        since=since,
        until=until,
        limit=limit,
        redrivable_only=not letter_ids,
    )
    outcomes: list[RedriveOutcome] = []
    with _database(ctx, database_url) as conn:
        letters = select_dead_letters(conn, selection)
        conn.rollback()
        missing = sorted(set(letter_ids) - {letter.id for letter in letters})
        if missing:
            raise UserFacingError(
                f"no dead letter {', '.join(missing)} for gatherer {name}", _ID_HINT, EXIT_USAGE
            )
        version = format_version(ctx.settings)
        for letter in reversed(letters):  # oldest first: frames in capture order
            outcome = redrive_one(conn, letter, version=version, dry_run=dry_run)
            outcomes.append(outcome)
            if not as_json:
                rows = ", ".join(f"{t}+{n}" for t, n in sorted(outcome.rows.items())) or "no row"
                detail = rows if outcome.status == "redriven" else _one_line(outcome.detail)
                click.echo(f"{outcome.id}  {outcome.status:<13}  {detail}")
    summary = {
        status: sum(1 for o in outcomes if o.status == status)
        for status in ("redriven", "still_failing", "skipped")
    }
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "summary": summary,
                    "outcomes": [
                        {
                            "id": o.id,
                            "status": o.status,
                            "rows": o.rows,
                            "detail": o.detail,
                            "source": o.source,
                        }
                        for o in outcomes
                    ],
                },
                indent=2,
            )
        )
        return
    note = " (dry run: nothing written)" if dry_run else ""
    click.echo(
        f"redriven {summary['redriven']}, still failing {summary['still_failing']}, "
        f"skipped {summary['skipped']}{note}"
    )
