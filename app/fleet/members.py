"""The gatherers of one `kalshi-data up --gatherers N` run, each derived from one settings object.

Gatherer i of N (DESIGN §2: each captures everything on its own) is named `<gatherer>-<i>`, owns
the database `<database>_g<i>` on the configured server, and serves its metrics on the
configured ports plus `PORT_STEP * (i - 1)` from its own multiprocess directory. Every Redis
key a gatherer uses, its Celery broker keys included, is prefixed `kd:{name}:`
(workers/celery_app.py, docs/up.md), so N gatherers share one Redis database and never consume
each other's tasks. With N = 1 the only member is the configured gatherer itself, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.config import PROCESS_KINDS, ProcessKind, Settings
from app.db.engine import DatabaseUnavailable, database_name, parse_url

MAX_GATHERERS = 9
PORT_STEP = 10  # ports of gatherer i: configured + 10 * (i - 1); 9 gatherers fit in 100 ports
GATHERER_PORT_KINDS: tuple[ProcessKind, ...] = ("listener", "ingest", "jobs")
POSTGRES_NAME_MAX = 63  # PostgreSQL truncates longer identifiers silently


class FleetSettingsError(ValueError):
    """The settings cannot be split into N gatherers (a name or a database name too long, a
    URL that is not PostgreSQL's); `up` shows it as a usage error with its hint."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Member:
    """One gatherer of the run: its own settings, and the suffix of its children's names."""

    settings: Settings
    suffix: str = ""  # "" for a lone gatherer, whose children keep their plain names

    @property
    def name(self) -> str:
        return self.settings.gatherer

    def child(self, kind: str) -> str:
        """The supervisor's name of this member's `kind` child (`listener@g1-2`)."""
        return f"{kind}{self.suffix}"


def derived_database_url(url: str, suffix: str) -> str:
    """`url` with `suffix` appended to its database name: same server, user and options."""
    try:
        parsed = parse_url(url)
        name = f"{database_name(parsed)}{suffix}"
    except DatabaseUnavailable as exc:
        raise FleetSettingsError(str(exc), "set KD_DATABASE_URL to a postgresql:// URL") from exc
    if len(name.encode()) > POSTGRES_NAME_MAX:
        raise FleetSettingsError(
            f"database name {name!r} is longer than {POSTGRES_NAME_MAX} bytes",
            "use a shorter database name in KD_DATABASE_URL",
        )
    return str(parsed.set(database=name).render_as_string(hide_password=False))


def derive_settings(settings: Settings, **changes: Any) -> Settings:
    """`settings` with top-level `changes`, validated like a loaded configuration."""
    try:
        return Settings.model_validate({**settings.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise FleetSettingsError(
            f"cannot derive the fleet's settings: {where}: {first['msg']}",
            "the gatherer name gets a suffix such as '-3' or '-dedup': keep it to 26 characters",
        ) from None


def _offset_ports(settings: Settings, index: int) -> dict[str, Any]:
    """The metrics section of gatherer `index`: shifted ports, its own directory."""
    metrics = settings.metrics
    ports = {kind: metrics.port_for(kind) for kind in PROCESS_KINDS}
    for kind in GATHERER_PORT_KINDS:
        if ports[kind]:  # 0 asks the system for any free port: nothing to shift
            ports[kind] += PORT_STEP * (index - 1)
    name = f"{settings.gatherer}-{index}"
    return {**metrics.model_dump(), "ports": ports, "multiproc_dir": metrics.multiproc_dir / name}


def gatherer_members(settings: Settings, count: int) -> list[Member]:
    """The gatherers to run: the configured one alone, or `count` derived ones."""
    if count == 1:
        return [Member(settings)]
    members = []
    for index in range(1, count + 1):
        name = f"{settings.gatherer}-{index}"
        member = derive_settings(
            settings,
            gatherer=name,
            database_url=derived_database_url(settings.database_url, f"_g{index}"),
            metrics=_offset_ports(settings, index),
            beat={"entries": "gatherer"},  # never kd.dedup.run, whatever the config file says
        )
        members.append(Member(member, suffix=f"@{name}"))
    return members


def fleet_env(settings: Settings) -> dict[str, str]:
    """Environment a fleet member's children need beyond `gatherer_env`: which beat entries,
    which metrics ports and directory (children read their own settings from the env)."""
    metrics = settings.metrics
    env = {
        "KD_BEAT__ENTRIES": settings.beat.entries,
        "KD_METRICS__MULTIPROC_DIR": str(metrics.multiproc_dir),
    }
    for kind in PROCESS_KINDS:
        env[f"KD_METRICS__PORTS__{kind.upper()}"] = str(metrics.port_for(kind))
    return env
