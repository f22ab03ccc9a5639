"""Fault injection: on demand (`POST /admin/faults`) and periodically (CLI flags).

Faults only change what is *sent*; the exchange's own state and its truth are untouched, so a
run with faults has the same `exchange.jsonl` as one without. Every fault that takes effect is
written to the truth's `faults.jsonl` when it happens (a skip or repeat of a seq when the
affected frame is produced, with the frame that was never sent).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from app.simulator.commands import ERROR_MESSAGES
from app.simulator.connection import Connection
from app.simulator.hub import Hub
from app.simulator.options import PeriodicFaults
from app.simulator.recorder import Recorder

FAULT_KINDS = (
    "drop",
    "stall",
    "skip_seq",
    "repeat_seq",
    "malformed",
    "unknown_type",
    "ws_error",
    "rest_429",
    "rest_5xx",
    "restart",
    "ignore_snapshot",
    "nameless_16",
)
REST_5XX_STATUSES = (500, 502, 503, 504)
TERMINAL_CODES = (10, 17, 25)  # the subscription (10, 17) or the connection (25) is gone


class FaultError(ValueError):
    """A fault request that cannot be applied (unknown kind, bad argument, unknown conn)."""


def malformed_payload(sid: int) -> bytes:
    """Truncated JSON, as a broken proxy or a bug might deliver."""
    return b'{"type":"orderbook_delta","sid":%d,"seq":' % sid


def unknown_type_payload(sid: int) -> bytes:
    return b'{"type":"simulator_unknown_type","sid":%d,"msg":{"note":"injected fault"}}' % sid


class FaultInjector:
    """Applies faults to connections and REST responses, and records each one."""

    def __init__(self, hub: Hub, recorder: Recorder, periodic: PeriodicFaults) -> None:
        self.hub = hub
        self.recorder = recorder
        self.periodic = periodic
        self.applied: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._rest_pending: list[int] = []  # statuses for the next REST requests, in order
        self._down_until = 0.0  # a "restart" refuses REST and WebSocket until then
        self._rest_requests = 0
        now = time.monotonic()
        self._next: dict[str, float] = {
            "drop": now + periodic.drop_every_s if periodic.drop_every_s else 0.0,
            "stall": now + periodic.stall_every_s if periodic.stall_every_s else 0.0,
            "malformed": now + periodic.malformed_every_s if periodic.malformed_every_s else 0.0,
            "unknown_type": (
                now + periodic.unknown_type_every_s if periodic.unknown_type_every_s else 0.0
            ),
        }

    # ---- connections -------------------------------------------------------------------

    def configure(self, conn: Connection) -> None:
        """Arm the periodic seq faults on a new connection."""
        conn.faults.skip_every = self.periodic.skip_seq_every
        conn.faults.repeat_every = self.periodic.repeat_seq_every
        conn.seq_fault_armed = conn.faults.armed()

    def _targets(self, request: dict[str, Any]) -> list[Connection]:
        conn_id = request.get("conn")
        live = [c for c in self.hub.connections.values() if not c.closed]
        if conn_id is None:
            return live
        if not isinstance(conn_id, int) or isinstance(conn_id, bool):
            raise FaultError("conn must be a connection id (integer)")
        chosen = [c for c in live if c.id == conn_id]
        if not chosen:
            raise FaultError(f"no open connection with id {conn_id}")
        return chosen

    def _record(self, kind: str, source: str, **details: Any) -> None:
        self.applied[kind] += 1
        self.recorder.fault({"fault": kind, "source": source, **details})

    def apply(self, request: dict[str, Any], source: str = "admin") -> dict[str, Any]:
        """Apply one fault request; returns what was done (for the admin reply)."""
        kind = request.get("type")
        if kind not in FAULT_KINDS:
            raise FaultError(f"type must be one of {', '.join(FAULT_KINDS)}")
        if kind == "rest_429":
            count = self._count(request)
            self._rest_pending.extend([429] * count)
            return {"type": kind, "armed": count}
        if kind == "rest_5xx":
            count = self._count(request)
            status = request.get("status", 503)
            if status not in REST_5XX_STATUSES:
                raise FaultError(f"status must be one of {REST_5XX_STATUSES}")
            self._rest_pending.extend([status] * count)
            return {"type": kind, "armed": count, "status": status}
        if kind == "nameless_16":
            count = self._count(request)
            self.hub.nameless_16 += count
            # Recorded when an error goes out without its ticker (commands.py).
            return {"type": kind, "armed": count}
        targets = self._targets(request)
        ids = [c.id for c in targets]
        if kind == "restart":
            seconds = request.get("seconds", 1.0)
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise FaultError("restart needs seconds > 0")
            self._down_until = time.monotonic() + float(seconds)
            for conn in targets:
                conn.drop("fault:restart")
            self._record("restart", source, seconds=seconds, connections=ids)
        elif kind == "drop":
            for conn in targets:
                self._record("drop", source, conn=conn.id)
                conn.drop("fault:drop")
        elif kind == "stall":
            seconds = request.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise FaultError("stall needs seconds > 0")
            for conn in targets:
                conn.flush()
                conn.stalled_until = time.monotonic() + float(seconds)
                self._record("stall", source, conn=conn.id, seconds=seconds)
        elif kind in ("skip_seq", "repeat_seq"):
            count = self._count(request)
            sid = request.get("sid", 0)
            if not isinstance(sid, int) or isinstance(sid, bool) or sid < 0:
                raise FaultError("sid must be a subscription id")
            for conn in targets:
                if sid and sid not in conn.subs:
                    raise FaultError(f"connection {conn.id} has no sid {sid}")
                pending = (
                    conn.faults.skip_pending if kind == "skip_seq" else conn.faults.repeat_pending
                )
                pending[sid] = pending.get(sid, 0) + count
                conn.seq_fault_armed = True
            # Recorded when each affected frame is produced (connection.py).
            return {"type": kind, "armed": count, "sid": sid, "connections": ids}
        elif kind == "ignore_snapshot":
            count = self._count(request)
            for conn in targets:
                conn.faults.ignore_snapshots += count
            # Recorded when a request is swallowed (commands.py).
            return {"type": kind, "armed": count, "connections": ids}
        elif kind in ("malformed", "unknown_type"):
            for conn in targets:
                sid = next(iter(conn.subs), 0)
                payload = (
                    malformed_payload(sid) if kind == "malformed" else unknown_type_payload(sid)
                )
                conn.send(payload)
                conn.flush()
                self._record(kind, source, conn=conn.id, frame=payload.decode())
        elif kind == "ws_error":
            self._ws_error(targets, request, source)
        return {"type": kind, "connections": ids}

    def _count(self, request: dict[str, Any]) -> int:
        count = request.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultError("count must be a positive integer")
        return count

    def _ws_error(self, targets: list[Connection], request: dict[str, Any], source: str) -> None:
        code = request.get("code")
        if not isinstance(code, int) or code not in ERROR_MESSAGES:
            raise FaultError(f"code must be one of {sorted(ERROR_MESSAGES)}")
        sid = request.get("sid")
        for conn in targets:
            if sid is not None and sid not in conn.subs:
                raise FaultError(f"connection {conn.id} has no sid {sid}")
        for conn in targets:
            message: dict[str, Any] = {"type": "error"}
            if sid is not None:
                message["sid"] = sid
            message["msg"] = {"code": code, "msg": ERROR_MESSAGES[code]}
            conn.send(orjson.dumps(message), sid or 0)
            conn.flush()
            self._record("ws_error", source, conn=conn.id, code=code, sid=sid)
            if code == 25:
                conn.drop("fault:ws_error_25")
            elif code in TERMINAL_CODES and sid is not None:
                self.hub.detach(conn.subs.pop(sid))

    # ---- REST --------------------------------------------------------------------------

    def down(self) -> bool:
        """True while a restart fault keeps the exchange's gateways closed."""
        return self._down_until > 0 and time.monotonic() < self._down_until

    def rest_status(self, path: str) -> int | None:
        """The injected status for this API request, or None to serve it normally."""
        self._rest_requests += 1
        status = None
        if self._rest_pending:
            status, source = self._rest_pending.pop(0), "admin"
        elif (
            self.periodic.rest_429_every and self._rest_requests % self.periodic.rest_429_every == 0
        ):
            status, source = 429, "periodic"
        elif (
            self.periodic.rest_5xx_every and self._rest_requests % self.periodic.rest_5xx_every == 0
        ):
            status, source = 503, "periodic"
        if status is None:
            return None
        self._record("rest_429" if status == 429 else "rest_5xx", source, path=path, status=status)
        return status

    # ---- periodic ----------------------------------------------------------------------

    def tick(self) -> None:
        """Fire the time-based periodic faults that are due."""
        now = time.monotonic()
        periodic = self.periodic
        every = {
            "drop": periodic.drop_every_s,
            "stall": periodic.stall_every_s,
            "malformed": periodic.malformed_every_s,
            "unknown_type": periodic.unknown_type_every_s,
        }
        for kind, due in self._next.items():
            if due and now >= due:
                self._next[kind] = now + every[kind]
                request: dict[str, Any] = {"type": kind}
                if kind == "stall":
                    request["seconds"] = periodic.stall_seconds
                self.apply(request, source="periodic")
