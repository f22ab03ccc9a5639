"""Process wiring: one aiohttp server for REST, WebSocket and admin, plus the order-flow pump.

The pump runs exchange steps in batches paced to the wall clock at `rate` steps per second
(virtual time advances per step, whatever the wall clock does), records in `clock.tsv` the wall
time by which the batch had run, then flushes every connection's queued frames in one write
each. A maintenance task sends the 10 s `heartbeat` pings and fires
periodic faults. Shutdown stops the pump, closes every WebSocket with 1001, writes
`state.jsonl` and flushes the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from app.kalshi.auth import HEADER_KEY, WS_PATH, load_public_key
from app.logs import log_event
from app.simulator.admin import AdminApi
from app.simulator.catalog import MARKETS_PER_EVENT, Catalog
from app.simulator.clock import NS_PER_S, VirtualClock, rfc3339
from app.simulator.commands import CommandHandler, error_message
from app.simulator.connection import Connection
from app.simulator.exchange import Exchange
from app.simulator.faults import FaultInjector
from app.simulator.final_state import state_lines
from app.simulator.hub import Hub
from app.simulator.options import SimOptions
from app.simulator.ratelimit import DEFAULT_COST, TokenBuckets
from app.simulator.recorder import GENERATOR_VERSION, TRUTH_FORMAT_VERSION, Recorder
from app.simulator.rest import (
    API_PREFIX,
    BadRequest,
    NotFound,
    RestApi,
    error_response,
    json_response,
)
from app.simulator.signatures import Signature, SignatureChecker
from app.simulator.trades import TradeLog
from app.simulator.views import views_for
from app.simulator.wire import wire_for

logger = logging.getLogger("app.simulator")

PUMP_SLICE_S = 0.02  # longest the pump runs before letting sockets and handlers in
PUMP_BATCH = 256
MAX_COMMAND_BYTES = 64 << 20
TRUTH_FLUSH_S = 1.0


class SimulatorCrashed(RuntimeError):
    """The order flow or maintenance task failed; the truth was still flushed."""


class Simulator:
    """One running exchange: state, server and truth."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        epoch_ms = options.epoch_ms if options.epoch_ms is not None else time.time_ns() // 1_000_000
        self.epoch_ms = epoch_ms
        self.clock = VirtualClock(epoch_ms, options.rate)
        self.catalog = Catalog(
            options.seed,
            options.markets,
            self.clock.epoch_ns,
            round(options.market_lifetime_s * NS_PER_S),
            options.legacy,
        )
        self.recorder = Recorder(options.truth_dir)
        self.trades = TradeLog()
        self.hub = Hub(wire_for(options.legacy), self.catalog, self.trades)
        self.exchange = Exchange(
            self.catalog, self.clock, self.recorder, self.hub, self.trades, options.max_events
        )
        self.commands = CommandHandler(self.hub, self.exchange, options.ack_consumes_seq)
        self.faults = FaultInjector(self.hub, self.recorder, options.faults)
        self.buckets = TokenBuckets(options.rate_limit)
        self._nested_errors = options.error_body == "nested"
        public_key = load_public_key(options.public_key_path) if options.public_key_path else None
        self.signatures = SignatureChecker(public_key)
        self.rest = RestApi(self.exchange, views_for(self.catalog), options.historical_lag_ns)
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._next_conn = 1
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.crashed: BaseException | None = None
        self.crash_event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.host = options.host
        self.port = options.port
        self.started_wall_ns = time.time_ns()

    # ---- lifecycle ---------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware], client_max_size=1 << 20)
        app.add_routes(self.rest.routes())
        app.add_routes([web.get(WS_PATH, self.websocket)])
        app.add_routes(AdminApi(self).routes())
        return app

    async def start(self) -> None:
        """Bind the listening socket and start the pump (raises OSError if it cannot bind)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port, backlog=1024)
        await site.start()
        # With --port 0 the kernel picks the port; the runner knows which one was bound.
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break
        self.recorder.write_meta(self.meta())
        self._tasks = [
            asyncio.create_task(self._pump(), name="sim-pump"),
            asyncio.create_task(self._maintain(), name="sim-maintain"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        log_event(
            logger,
            "simulator_started",
            host=self.host,
            port=self.port,
            markets=self.options.markets,
            seed=self.options.seed,
            rate=self.options.rate,
            format="legacy" if self.options.legacy else "current",
            truth=str(self.options.truth_dir) if self.options.truth_dir else None,
        )

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn_id, ws in list(self._sockets.items()):
            conn = self.hub.connections.get(conn_id)
            if conn is not None and not conn.closed:
                conn.stalled_until = 0.0
                conn.flush()
                conn.log_close_frame(1001)
                conn.mark_closed("shutdown")
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(ws.close(code=1001, message=b"simulator shutdown"), 2)
        if self._runner is not None:
            await self._runner.cleanup()
        self.dump_state("shutdown")
        self.recorder.close()
        log_event(logger, "simulator_stopped", steps=self.exchange.step_no)

    def dump_state(self, reason: str) -> Path | None:
        return self.recorder.write_state(state_lines(self.exchange, reason))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A pump or maintenance task must never end on its own: stop the process if it does."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        logger.error("simulator task %s failed", task.get_name(), exc_info=error)
        self.crashed = error or RuntimeError(f"{task.get_name()} ended")
        self.crash_event.set()

    # ---- tasks -------------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        exchange, hub, recorder, rate = self.exchange, self.hub, self.recorder, self.options.rate
        started = loop.time()
        # clock.tsv: when the exchange began, then one line per batch (not per step).
        clocked = exchange.step_no
        recorder.clock(clocked)
        while not self._stopping:
            if exchange.finished:
                hub.flush_all()
                await asyncio.sleep(0.02)
                continue
            due = int((loop.time() - started) * rate) - exchange.step_no
            ran = 0
            if due > 0:
                deadline = loop.time() + PUMP_SLICE_S
                while ran < due:
                    done = exchange.run(min(PUMP_BATCH, due - ran))
                    ran += done
                    if done == 0 or loop.time() >= deadline:
                        break
            if exchange.step_no != clocked:
                # Before the flush: the steps' frames are sent at or after this wall time.
                clocked = exchange.step_no
                recorder.clock(clocked)
            hub.flush_all()
            if ran < due and not exchange.finished:
                await asyncio.sleep(0)
            else:
                next_at = started + (exchange.step_no + 1) / rate
                await asyncio.sleep(min(0.02, max(0.001, next_at - loop.time())))

    async def _maintain(self) -> None:
        interval = self.options.ping_interval_s
        tick = min(0.05, interval / 4)
        next_flush = time.monotonic() + TRUTH_FLUSH_S
        while not self._stopping:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now >= next_flush:  # bounds what a crash (SIGKILL) can lose
                next_flush = now + TRUTH_FLUSH_S
                self.recorder.flush()
            for conn in list(self.hub.connections.values()):
                if conn.closed:
                    continue
                if now >= conn.next_ping:
                    conn.next_ping = now + interval
                    conn.ping()
                if conn.stalled_until and now >= conn.stalled_until:
                    conn.flush()
            self.faults.tick()

    # ---- HTTP --------------------------------------------------------------------------

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        path = request.path
        if not path.startswith(API_PREFIX + "/"):
            response: web.StreamResponse = await handler(request)
            return response
        if self.faults.down():
            return error_response(503, "service_unavailable", "exchange restarting")
        injected = self.faults.rest_status(path)
        if injected == 429:
            return json_response({"error": "too many requests"}, 429)
        if injected is not None:
            return error_response(injected, "service_unavailable", "injected fault")
        verdict, reason = self.signatures.check(request.headers, request.method, path)
        if verdict is Signature.INVALID or (
            verdict is Signature.ABSENT
            and self.signatures.enabled
            and self.options.rest_auth == "strict"
        ):
            return self._error(401, "unauthorized", reason or "signature required")
        key = request.headers.get(HEADER_KEY) or request.remote or "unknown"
        cost = DEFAULT_COST
        if path.endswith("/markets/orderbooks"):
            cost = max(DEFAULT_COST, len(request.query.getall("tickers", [])))
        if not self.buckets.take(key, cost):
            return json_response({"error": "too many requests"}, 429)
        try:
            response = await handler(request)
            return response
        except BadRequest as exc:
            return self._error(400, "bad_request", str(exc))
        except NotFound as exc:
            return self._error(404, "not_found", str(exc))
        except web.HTTPNotFound:
            return self._error(404, "not_found", f"no endpoint {path}")
        except web.HTTPMethodNotAllowed:
            return self._error(405, "method_not_allowed", f"{request.method} not allowed")

    def _error(self, status: int, code: str, message: str) -> web.Response:
        """A 4xx answer in the configured body shape (`--error-body`)."""
        return error_response(status, code, message, self._nested_errors)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.faults.down():
            return error_response(503, "service_unavailable", "exchange restarting")
        verdict, reason = self.signatures.check(request.headers, "GET", WS_PATH)
        authenticated = not self.signatures.enabled or verdict is Signature.VALID
        if verdict is Signature.INVALID or (
            verdict is Signature.ABSENT
            and self.signatures.enabled
            and self.options.ws_auth == "required"
        ):
            return self._error(401, "unauthorized", reason or "signature required")
        conn_id = self._next_conn
        self._next_conn += 1
        # autoclose=False: on the client's close frame we must stop writing *before* the
        # close reply goes out, or the pump could slip data frames in after it.
        ws = web.WebSocketResponse(autoping=True, autoclose=False, max_msg_size=MAX_COMMAND_BYTES)
        ws.headers["X-Simulator-Connection"] = str(conn_id)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        peer = request.remote or ""
        conn = Connection(
            conn_id, transport, peer, authenticated, self.recorder, self.options.max_buffer_bytes
        )
        conn.next_ping = time.monotonic() + self.options.ping_interval_s
        self.faults.configure(conn)
        self.hub.connections[conn_id] = conn
        self._sockets[conn_id] = ws
        self.recorder.connection(
            {"conn": conn_id, "event": "open", "peer": peer, "authenticated": authenticated}
        )
        log_event(logger, "ws_connected", conn=conn_id, peer=peer, authenticated=authenticated)
        try:
            while not conn.closed:
                message = await ws.receive()
                if message.type == WSMsgType.TEXT:
                    self.commands.handle_text(conn, message.data)
                elif message.type == WSMsgType.BINARY:
                    conn.send_json(error_message(1, None))
                else:  # CLOSE, CLOSING, CLOSED or ERROR: the client is gone or going
                    conn.mark_closed(f"client closed ({message.data})")
                    break
                conn.flush()
                # Big subscriptions snapshot in chunks; this connection's next command waits.
                while not conn.closed and self.commands.run_pending(conn):
                    conn.flush()
                    await asyncio.sleep(0)
        finally:
            conn.mark_closed("handler ended")
            self.hub.remove_connection(conn)
            self._sockets.pop(conn_id, None)
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
            self.recorder.connection(
                {
                    "conn": conn_id,
                    "event": "close",
                    "reason": conn.close_reason,
                    "frames_sent": conn.frames_sent,
                }
            )
            log_event(logger, "ws_closed", conn=conn_id, reason=conn.close_reason)
        return ws

    # ---- descriptions ------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        options = self.options
        return {
            "truth_format": TRUTH_FORMAT_VERSION,
            "generator": GENERATOR_VERSION,
            "seed": options.seed,
            "markets": options.markets,
            "rate": options.rate,
            "period_ns": self.clock.period_ns,
            "epoch_ms": self.epoch_ms,
            "format": "legacy" if options.legacy else "current",
            "market_lifetime_ns": self.catalog.lifetime_ns,
            "markets_per_event": MARKETS_PER_EVENT,
            "series_count": self.catalog.series_count,
            "max_events": options.max_events,
            "started_wall_ns": self.started_wall_ns,
            "host": self.host,
            "port": self.port,
            "auth": {
                "public_key": str(options.public_key_path) if options.public_key_path else None,
                "ws_auth": options.ws_auth,
                "rest_auth": options.rest_auth,
            },
            "rate_limit_tokens_per_s": options.rate_limit,
            "periodic_faults": options.faults.describe(),
            "ack_consumes_seq": options.ack_consumes_seq,
            "error_body": options.error_body,
        }

    def describe(self) -> dict[str, Any]:
        exchange = self.exchange
        connections = []
        for conn in self.hub.connections.values():
            connections.append(
                {
                    "conn": conn.id,
                    "peer": conn.peer,
                    "authenticated": conn.authenticated,
                    "closed": conn.closed,
                    "stalled": conn.stalled,
                    "frames_sent": conn.frames_sent,
                    "bytes_sent": conn.bytes_sent,
                    "buffered_bytes": conn.buffered(),
                    "subscriptions": [
                        {
                            "sid": sub.sid,
                            "channel": sub.channel,
                            "markets": None if sub.markets is None else len(sub.markets),
                            "seq": sub.seq if sub.sequenced else None,
                        }
                        for sub in conn.subs.values()
                    ],
                }
            )
        return {
            "step": exchange.step_no,
            "max_events": exchange.max_events,
            "finished": exchange.finished,
            "virtual_ns": exchange.now_ns,
            "virtual_time": rfc3339(exchange.now_ns, 6),
            "epoch_ms": self.epoch_ms,
            "seed": self.options.seed,
            "format": "legacy" if self.options.legacy else "current",
            "markets": {
                "count": exchange.count,
                "by_status": exchange.status_counts(),
                "materialized": len(exchange.states),
            },
            "events": exchange.event_count(),
            "trades": len(exchange.trades),
            "connections": connections,
            "faults_applied": self.faults.applied,
            "rest_rate_limited": self.buckets.rejected,
            "truth_dir": str(self.options.truth_dir) if self.options.truth_dir else None,
        }


async def serve(options: SimOptions, announce: Callable[[str], None]) -> None:
    """Run until SIGTERM/SIGINT, announcing the listening URL once bound."""
    simulator = Simulator(options)
    await simulator.start()
    announce(f"simulator listening on http://{simulator.host}:{simulator.port}")
    loop = asyncio.get_running_loop()
    stop = simulator.crash_event  # set by a signal, or by a task that died
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await simulator.stop()
    if simulator.crashed is not None:
        raise SimulatorCrashed(str(simulator.crashed)) from simulator.crashed
