"""One connection manager per WebSocket slot: connect, subscribe, read, watch, recover, reconnect.

A manager owns one *shard*: either a global slot (channels such as `trade` for all markets) or
an orderbook slot holding up to `markets_per_connection` tickers on one `orderbook_delta`
subscription. It survives its sessions: each (re)connect is a new session with a new signed
upgrade, a new connection id `{gatherer}-{shard}-{uuid4 hex}` and new sids (CM-16).

Two tasks per session and a strict split between them:
* the WebSocket reader calls `_on_frame` for every frame, replies included (`deliver_replies`).
  It judges the seq, updates bookkeeping and hands the raw bytes to the publisher. It never
  awaits a command (that would wait for a reply only the reader itself can read);
* the control loop (`_serve`) sends every command, one at a time: subscribe, add/delete
  markets, `get_snapshot` after gaps, resubscribe after terminal errors, the staleness probe.

What it never does: drop a frame, parse more of a frame than routing and the seq verdict need
(type, sid, seq, market ticker), or write anything but frames to the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.config import ListenerSettings
from app.kalshi.auth import Signer
from app.kalshi.backoff import Backoff
from app.kalshi.errors import KalshiError, WsClosed, WsReplyTimeout
from app.kalshi.ws import CloseInfo, KalshiWebSocket, RawFrame
from app.kalshi.ws_errors import WsError, WsMarketNotFound
from app.kalshi.ws_replies import reply_sids
from app.listener.control import (
    GAP_DETECTED,
    GAP_RECOVERED,
    SESSION_CLOSED,
    SESSION_OPENED,
    control_frame,
    gap_fields,
)
from app.listener.heartbeat import SessionInfo
from app.listener.holes import HoleTracker, MarketBirths
from app.listener.metrics import connection_role, metric_role
from app.listener.sequence import SequenceTracker, Verdict
from app.listener.stats import ConnectionStats, ListenerStats
from app.logs import log_event
from app.metrics import record_gap_detected, record_gap_recovered, record_reconnect
from app.streams import Frame, JournalFull, StreamNames, StreamPublisher

log = logging.getLogger("kalshi_data.listener")

BOOK_CHANNEL = "orderbook_delta"
REPLY_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error"})
# The server dropped the subscription (kalshi-api.md §3.4); 25 also closes the connection.
RESUBSCRIBE_CODES = frozenset({10, 17})
TICK_S = 1.0

MarketRejected = Callable[[str, str], None]  # (shard, ticker)


@dataclass
class _Session:
    """State of one WebSocket session; thrown away at disconnect."""

    ws: KalshiWebSocket
    conn_id: str
    opened_ns: int
    last_frame_ns: int = 0  # wall time the newest frame was read (start of a disconnect hole)
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    channel_of: dict[int, str] = field(default_factory=dict)  # sid -> channel
    book_sid: int | None = None
    subscribed: set[str] = field(default_factory=set)  # markets on book_sid (optimistic)
    pending: dict[int, set[str]] = field(default_factory=dict)  # sid -> awaiting a snapshot
    open_gaps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    recovery_mode: dict[int, str] = field(default_factory=dict)
    snapshot_due: set[int] = field(default_factory=set)  # sids needing get_snapshot
    # sid -> (monotonic time of the last get_snapshot, requests sent) while snapshots are owed
    snapshot_asked: dict[int, tuple[float, int]] = field(default_factory=dict)
    carry_gaps: list[dict[str, Any]] = field(default_factory=list)  # for the next book sid
    carry_mode: str = "reconnect"
    rejected: set[str] = field(default_factory=set)  # code 16 seen in a frame
    last_frame: float = field(default_factory=time.monotonic)
    close_reason: str | None = None


class ConnectionManager:
    """Keeps one shard subscribed across reconnects."""

    def __init__(
        self,
        *,
        shard: str,
        role: str,
        channels: tuple[str, ...],
        url: str,
        gatherer: str,
        signer: Signer | None,
        publisher: StreamPublisher,
        names: StreamNames,
        control_stream: str,
        settings: ListenerSettings,
        stats: ListenerStats,
        on_market_rejected: MarketRejected | None = None,
        started_ns: int | None = None,
        births: MarketBirths | None = None,
    ) -> None:
        if role not in ("global", "orderbook"):
            raise ValueError(f"unknown role {role!r}")
        self.shard = shard
        self.role = role
        self.channels = channels
        self.url = url
        self.gatherer = gatherer
        self._signer = signer
        self._publisher = publisher
        self._names = names
        self._control_stream = control_stream
        self._settings = settings
        self._stats = stats
        self.conn_stats = stats.connections.setdefault(shard, ConnectionStats(shard, role))
        self.metric_role = connection_role(role, channels)
        self.conn_stats.metric_role = self.metric_role
        self._on_market_rejected = on_market_rejected
        self._backoff = Backoff(settings.backoff_base_s, settings.backoff_max_s)
        self.desired: set[str] = set()
        self._wake = asyncio.Event()
        self._session: _Session | None = None
        self._carry_gaps: list[dict[str, Any]] = []
        self.fatal: BaseException | None = None
        # Holes (docs/holes.md): everything before the first subscription is one.
        self._started_ns = started_ns if started_ns is not None else time.time_ns()
        self._books_live = False  # a book subscription has been acknowledged once
        self._births = births if births is not None else MarketBirths()
        self.holes = HoleTracker(gatherer, self._emit_hole, round(settings.hole_lead_s * 1e9))
        if role == "global":
            for channel in channels:
                self.holes.channel_missed(channel, "not_subscribed", self._started_ns, lead=False)

    # -- what the runner calls ------------------------------------------------------------

    @property
    def conn_id(self) -> str | None:
        return self._session.conn_id if self._session else None

    @property
    def session(self) -> KalshiWebSocket | None:
        return self._session.ws if self._session else None

    def session_info(self) -> SessionInfo | None:
        """The live session as the heartbeat records it (None between sessions)."""
        session = self._session
        if session is None:
            return None
        fields = self._session_fields(session)
        return SessionInfo(
            conn_id=session.conn_id,
            role=self.role,
            shard=self.shard,
            url=self.url,
            opened_ns=session.opened_ns,
            market_count=fields["market_count"],
        )

    def set_markets(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Change the desired market set; the control loop reconciles within a tick."""
        now = time.time_ns()
        added = [t for t in add if t not in self.desired]
        removed = [t for t in remove if t in self.desired]
        self.desired.update(added)
        self.desired.difference_update(removed)
        if added:
            # Before the shard's first subscription its markets are missed since the start; a
            # market added later since its birth (its lifecycle `created`), else since now.
            default = now if self._books_live else self._started_ns
            by_since: dict[int, list[str]] = {}
            for ticker in added:
                born = self._births.take(ticker)
                since = default if born is None else min(default, born - self.holes.lead_ns)
                since = max(since, self._started_ns)  # capture starts with this listener
                by_since.setdefault(since, []).append(ticker)
            for since, tickers in sorted(by_since.items()):
                self.holes.books_missed(tickers, "not_subscribed", since, lead=False)
        if removed:
            self.holes.books_forgotten(removed, now)
        self.conn_stats.desired_markets = len(self.desired)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect with backoff until `stop` is set (CM-16, CM-17)."""
        attempt = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                session = await self._open()
            except (KalshiError, OSError) as exc:
                delay = self._backoff.delay(attempt)
                attempt += 1
                log_event(
                    log,
                    "listener_connect_failed",
                    logging.WARNING,
                    shard=self.shard,
                    error=str(exc),
                    retry_in_s=round(delay, 3),
                )
                await _sleep_unless(stop, delay)
                continue
            info = await self._serve(session, stop)
            self._close_session(session, info)
            if self.fatal is not None or stop.is_set():
                return
            healthy = time.monotonic() - started >= self._settings.healthy_after_s
            if healthy:
                attempt = 0
            # 1000 after a healthy session: reconnect at once; everything else backs off.
            delay = 0.0 if (info.code == 1000 and healthy) else self._backoff.delay(attempt)
            attempt += 0 if delay == 0.0 else 1
            if info.code == 1008:
                log_event(
                    log,
                    "listener_policy_violation",
                    logging.ERROR,
                    shard=self.shard,
                    reason=info.reason,
                    hint="check the Kalshi key and signing clock",
                )
            self._stats.reconnects += 1
            self.conn_stats.reconnects += 1
            record_reconnect(self.gatherer, self.metric_role)
            log_event(
                log,
                "listener_reconnecting",
                shard=self.shard,
                code=info.code,
                reason=session.close_reason or info.reason,
                retry_in_s=round(delay, 3),
            )
            await _sleep_unless(stop, delay)

    # -- sessions -------------------------------------------------------------------------

    async def _open(self) -> _Session:
        conn_id = f"{self.gatherer}-{self.shard}-{uuid.uuid4().hex}"
        holder: list[_Session] = []

        def on_frame(frame: RawFrame) -> None:
            self._on_frame(holder[0], frame)

        # A new connect signs a new timestamp (re-sign on every reconnect, CM-13).
        ws = await KalshiWebSocket.connect(
            self.url,
            signer=self._signer,
            on_frame=on_frame,
            deliver_replies=True,
            open_timeout_s=self._settings.connect_timeout_s,
            reply_timeout_s=self._settings.reply_timeout_s,
            ping_interval_s=self._settings.ping_interval_s,
        )
        opened_ns = time.time_ns()
        session = _Session(ws=ws, conn_id=conn_id, opened_ns=opened_ns, last_frame_ns=opened_ns)
        holder.append(session)
        session.carry_gaps, self._carry_gaps = self._carry_gaps, []
        self._session = session
        self.conn_stats.conn_id = conn_id
        self.conn_stats.connected = True
        self.conn_stats.sessions += 1
        self.conn_stats.last_frame_monotonic = time.monotonic()
        self._control(SESSION_OPENED, session, **self._session_fields(session))
        log_event(log, "listener_session_opened", shard=self.shard, conn_id=conn_id)
        return session

    def _session_fields(self, session: _Session) -> dict[str, Any]:
        return {
            "gatherer": self.gatherer,
            "conn_id": session.conn_id,
            "role": self.role,
            "shard": self.shard,
            "url": self.url,
            "opened_ns": session.opened_ns,
            "market_count": len(self.desired) if self.role == "orderbook" else None,
        }

    def _close_session(self, session: _Session, info: CloseInfo) -> None:
        reason = session.close_reason or f"{info.code} {info.reason!r}"
        if info.error is not None:
            reason = f"{reason} ({info.error!r})"
        self.conn_stats.connected = False
        self.conn_stats.subscribed_markets = 0
        # Gaps not yet repaired are repaired by the next session's subscribe snapshots.
        for gaps in session.open_gaps.values():
            self._carry_gaps.extend(gaps)
        self._carry_gaps.extend(session.carry_gaps)
        self._session = None
        # What the exchange sent after the last frame read reached no one (docs/holes.md).
        cause = "listener_down" if session.close_reason == "shutdown" else "disconnect"
        last_seen = _last_alive_ns(session, info)
        with contextlib.suppress(JournalFull):
            if self.role == "global":
                for channel in sorted(set(session.channel_of.values())):
                    self.holes.channel_missed(
                        channel,
                        cause,
                        last_seen,
                        conn_id=session.conn_id,
                        detail=reason,
                    )
            else:
                self.holes.books_missed(
                    self.desired | session.subscribed,
                    cause,
                    last_seen,
                    conn_id=session.conn_id,
                    detail=reason,
                )
        with contextlib.suppress(JournalFull):
            self._control(
                SESSION_CLOSED,
                session,
                **self._session_fields(session),
                closed_ns=time.time_ns(),
                close_reason=reason,
            )
        log_event(
            log, "listener_session_closed", shard=self.shard, conn_id=session.conn_id, reason=reason
        )

    async def _serve(self, session: _Session, stop: asyncio.Event) -> CloseInfo:
        ws = session.ws
        closed = asyncio.ensure_future(ws.wait_closed())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            if session.carry_gaps and not self.desired and self.role == "orderbook":
                self._recovered(session, session.carry_gaps, "reconnect")
                session.carry_gaps = []
            while not closed.done() and not stopping.done():
                self._wake.clear()
                try:
                    await self._step(session)
                except WsReplyTimeout as exc:
                    session.close_reason = f"command timeout: {exc}"
                    await ws.close()
                    break
                except WsClosed:
                    break
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {closed, stopping, waker},
                    timeout=TICK_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waker.cancel()
            if not closed.done():
                if stopping.done() and session.close_reason is None:
                    session.close_reason = "shutdown"
                await ws.close()
            info = await closed
        finally:
            stopping.cancel()
        if isinstance(info.error, JournalFull):
            self.fatal = info.error
        return info

    # -- the control loop -----------------------------------------------------------------

    async def _step(self, session: _Session) -> None:
        if await self._watchdog(session):
            return
        for ticker in sorted(session.rejected):
            self._drop_market(session, ticker, "frame")
        session.rejected.clear()
        if self.role == "global":
            await self._reconcile_global(session)
        else:
            await self._reconcile_book(session)
            if await self._snapshots_overdue(session):
                return
            await self._request_snapshots(session)

    async def _snapshots_overdue(self, session: _Session) -> bool:
        """A `get_snapshot` whose snapshots did not all come within `snapshot_timeout_s` is
        asked again, up to `snapshot_retries` times; then the subscription is made afresh
        (new sid, a snapshot of every market). Returns True when it resubscribed."""
        now = time.monotonic()
        for sid, (asked, sent) in sorted(session.snapshot_asked.items()):
            if sid not in session.pending:
                del session.snapshot_asked[sid]
                continue
            if now - asked < self._settings.snapshot_timeout_s:
                continue
            log_event(
                log,
                "listener_snapshot_overdue",
                logging.WARNING,
                shard=self.shard,
                sid=sid,
                requests=sent,
                missing=len(session.pending[sid]),
            )
            self._stats.snapshot_timeouts += 1
            if sent <= self._settings.snapshot_retries:
                session.snapshot_due.add(sid)
            else:
                del session.snapshot_asked[sid]
                await self._resubscribe_book(session, "resubscribe")
                return True
        return False

    async def _watchdog(self, session: _Session) -> bool:
        """No frame for `staleness_timeout_s`: ask the server something; silence -> reconnect.

        Quiet orderbook shards are legitimately silent, so a live server answering the probe
        (its reply is a frame too) keeps the session; a stalled one does not (CM-14).
        """
        idle = time.monotonic() - session.last_frame
        if idle < self._settings.staleness_timeout_s:
            return False
        try:
            await session.ws.list_subscriptions(timeout_s=self._settings.reply_timeout_s)
        except WsReplyTimeout:
            session.close_reason = f"stale: no frame for {idle:.1f}s and no probe reply"
            self.conn_stats.stale_reconnects += 1
            log_event(log, "listener_stale", logging.WARNING, shard=self.shard, idle_s=idle)
            await session.ws.close()
            return True
        except WsError as exc:
            self._count_error(exc)
        session.last_frame = time.monotonic()
        return False

    async def _reconcile_global(self, session: _Session) -> None:
        missing = [c for c in self.channels if c not in session.channel_of.values()]
        if not missing:
            return
        try:
            await session.ws.subscribe(missing)
        except WsError as exc:
            self._count_error(exc)
            log_event(
                log,
                "listener_subscribe_failed",
                logging.ERROR,
                shard=self.shard,
                channels=missing,
                code=exc.error_code,
                error=exc.message,
            )
            # Retry on the next tick unless the channel itself is refused (a bug, CM-8).
            if exc.error_code in (8, 9):
                self.channels = tuple(c for c in self.channels if c not in missing)

    async def _reconcile_book(self, session: _Session) -> None:
        batch = self._settings.command_batch
        to_add = sorted(self.desired - session.subscribed)
        to_delete = sorted(session.subscribed - self.desired)
        if to_delete:
            if session.book_sid is not None and not (session.subscribed - set(to_delete)):
                await self._unsubscribe_book(session)
            elif session.book_sid is not None:
                for start in range(0, len(to_delete), batch):
                    chunk = to_delete[start : start + batch]
                    if await self._book_command(session, "delete_markets", chunk):
                        session.subscribed.difference_update(chunk)
                        self._forget_pending(session, chunk)
            else:
                session.subscribed.difference_update(to_delete)
        for start in range(0, len(to_add), batch):
            chunk = [t for t in to_add[start : start + batch] if t in self.desired]
            if not chunk:
                continue
            # Optimistic: a gap seen before the ack must also re-snapshot these markets.
            session.subscribed.update(chunk)
            if session.book_sid is None:
                ok = await self._subscribe_book(session, chunk)
            else:
                ok = await self._book_command(session, "add_markets", chunk)
            if not ok:
                session.subscribed.difference_update(chunk)
        self.conn_stats.subscribed_markets = len(session.subscribed)

    async def _subscribe_book(self, session: _Session, chunk: list[str]) -> bool:
        try:
            await session.ws.subscribe([BOOK_CHANNEL], market_tickers=chunk)
        except WsError as exc:
            self._command_failed(session, exc, "subscribe", chunk)
            return False
        return True

    async def _book_command(self, session: _Session, action: str, chunk: list[str]) -> bool:
        sid = session.book_sid
        if sid is None:
            return False
        try:
            await session.ws.update_subscription(sid, action, chunk)
        except WsError as exc:
            self._command_failed(session, exc, action, chunk)
            return False
        return True

    async def _unsubscribe_book(self, session: _Session) -> None:
        sid = session.book_sid
        assert sid is not None
        try:
            await session.ws.unsubscribe([sid])
        except WsError as exc:
            self._command_failed(session, exc, "unsubscribe", [])
            if exc.error_code != 7:  # 7: the sid is already gone, which is what we wanted
                return
        self._drop_sid(session, sid)
        session.subscribed.clear()

    async def _request_snapshots(self, session: _Session) -> None:
        """`get_snapshot` for every sid with an unrepaired gap; resubscribe if refused."""
        for sid in sorted(session.snapshot_due):
            session.snapshot_due.discard(sid)
            wanted = sorted(session.pending.get(sid, ()))
            if not wanted or sid != session.book_sid:
                continue
            self._stats.snapshot_requests += 1
            _, sent = session.snapshot_asked.get(sid, (0.0, 0))
            session.snapshot_asked[sid] = (time.monotonic(), sent + 1)
            for start in range(0, len(wanted), self._settings.command_batch):
                chunk = wanted[start : start + self._settings.command_batch]
                try:
                    await session.ws.get_snapshot(sid, chunk)
                except WsError as exc:
                    self._count_error(exc)
                    log_event(
                        log,
                        "listener_get_snapshot_failed",
                        logging.WARNING,
                        shard=self.shard,
                        sid=sid,
                        code=exc.error_code,
                        error=exc.message,
                    )
                    await self._resubscribe_book(session, "resubscribe")
                    return

    async def _resubscribe_book(self, session: _Session, mode: str) -> None:
        """Fallback recovery: drop the sid and subscribe again (new sid, new snapshots)."""
        sid = session.book_sid
        if sid is None:
            return
        self._stats.resubscribes += 1
        self.holes.books_missed(
            session.subscribed,
            "subscribe_failed",
            session.last_frame_ns,
            conn_id=session.conn_id,
            detail=f"get_snapshot failed on sid {sid}: resubscribing",
        )
        with contextlib.suppress(WsError):
            await session.ws.unsubscribe([sid])
        session.carry_gaps.extend(session.open_gaps.pop(sid, []))
        session.carry_mode = mode
        self._drop_sid(session, sid)
        session.subscribed.clear()
        await self._reconcile_book(session)

    def _command_failed(
        self, session: _Session, exc: WsError, command: str, chunk: list[str]
    ) -> None:
        """Error replies per code (kalshi-api.md §3.4, CM-8)."""
        self._count_error(exc)
        if isinstance(exc, WsMarketNotFound):
            # A rejected command changes nothing; drop the named market, retry the rest.
            dropped = [exc.market_ticker] if exc.market_ticker else chunk
            for ticker in dropped:
                self._drop_market(session, ticker, command)
            return
        if exc.terminal and session.book_sid is not None:
            # 10/17: the subscription is gone; subscribe afresh on the next tick.
            sid = session.book_sid
            self.holes.books_missed(
                session.subscribed,
                "subscribe_failed",
                session.last_frame_ns,
                conn_id=session.conn_id,
                detail=f"{command} failed with code {exc.error_code}: subscription ended",
            )
            session.carry_gaps.extend(session.open_gaps.pop(sid, []))
            session.carry_mode = "resubscribe"
            self._drop_sid(session, sid)
            session.subscribed.clear()
        log_event(
            log,
            "listener_command_failed",
            logging.ERROR,
            shard=self.shard,
            command=command,
            code=exc.error_code,
            error=exc.message,
            markets=len(chunk),
        )

    def _drop_market(self, session: _Session, ticker: str, where: str) -> None:
        self._stats.markets_dropped += 1
        self.desired.discard(ticker)
        self.holes.books_forgotten([ticker], time.time_ns())
        session.subscribed.discard(ticker)
        self._forget_pending(session, [ticker])
        self.conn_stats.desired_markets = len(self.desired)
        log_event(
            log,
            "listener_market_dropped",
            logging.WARNING,
            shard=self.shard,
            ticker=ticker,
            reason=f"market not found (16) on {where}",
        )
        if self._on_market_rejected is not None:
            self._on_market_rejected(self.shard, ticker)

    def _count_error(self, exc: WsError) -> None:
        self._stats.errors_by_code[exc.error_code] += 1

    # -- the read path ----------------------------------------------------------------------

    def _on_frame(self, session: _Session, frame: RawFrame) -> None:
        data = frame.data
        # websockets has validated text frames as UTF-8, so this gives back the exact bytes.
        raw = data.encode("utf-8") if isinstance(data, str) else data
        now = time.monotonic()
        session.last_frame = now
        previous_ns, session.last_frame_ns = session.last_frame_ns, frame.received_ns
        self.conn_stats.last_frame_monotonic = now
        self.conn_stats.frames += 1
        self._stats.frames += 1
        msg_type: str | None = None
        sid: int | None = None
        seq: int | None = None
        ticker: str | None = None
        gap = resync = repeat = False
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict):
            value = message.get("type")
            msg_type = value if isinstance(value, str) else None
            sid = _int(message.get("sid"))
            seq = _int(message.get("seq"))
            body = message.get("msg")
            if isinstance(body, dict):
                value = body.get("market_ticker")
                ticker = value if isinstance(value, str) else None
            if msg_type in REPLY_TYPES:
                self._on_reply(session, msg_type, message, body, frame.received_ns)
            elif sid is not None and seq is not None:
                gap, repeat = self._check_seq(session, sid, seq, frame.received_ns, previous_ns)
                if msg_type == "orderbook_snapshot" and ticker is not None:
                    resync = self._snapshot_seen(session, sid, ticker)
                    if sid == session.book_sid:
                        self.holes.book_resumed(ticker, frame.received_ns)
            if (
                msg_type == "market_lifecycle_v2"
                and ticker is not None
                and isinstance(body, dict)
                and body.get("event_type") == "created"
            ):
                self._births.note(ticker, frame.received_ns)
        else:
            self._stats.unparseable_frames += 1
        kind = msg_type or "unparseable"
        self._stats.frames_by_type[kind] += 1
        self._stats.bytes_by_type[kind] += len(raw)
        self._publisher.add(
            self._names.route(msg_type, ticker),
            Frame(raw, frame.received_ns, session.conn_id, sid, seq, gap, resync, repeat),
        )

    def _on_reply(
        self, session: _Session, msg_type: str, message: dict[str, Any], body: Any, recv_ns: int
    ) -> None:
        if msg_type == "subscribed" and isinstance(body, dict):
            sid, channel = _int(body.get("sid")), body.get("channel")
            if sid is None or not isinstance(channel, str):
                return
            session.tracker.start(sid)
            session.channel_of[sid] = channel
            if channel != BOOK_CHANNEL:
                self.holes.channel_resumed(channel, recv_ns)
            if channel == BOOK_CHANNEL:
                session.book_sid = sid
                self._books_live = True
                if session.carry_gaps:
                    session.open_gaps[sid] = session.carry_gaps
                    session.recovery_mode[sid] = session.carry_mode
                    session.carry_gaps = []
                    session.pending[sid] = set(self.desired)
        elif msg_type == "unsubscribed":
            for sid in reply_sids(message):
                session.tracker.forget(sid)
                session.channel_of.pop(sid, None)
        elif msg_type == "error" and not _int(message.get("id")):
            self._on_async_error(session, message, body)

    def _on_async_error(self, session: _Session, message: dict[str, Any], body: Any) -> None:
        """An error frame answering no command: the server dropped something on its own."""
        body = body if isinstance(body, dict) else {}
        code = _int(body.get("code")) or 0
        sid = _int(message.get("sid"))
        self._stats.errors_by_code[code] += 1
        log_event(
            log,
            "listener_ws_error",
            logging.WARNING,
            shard=self.shard,
            code=code,
            sid=sid,
            error=body.get("msg"),
        )
        if code in RESUBSCRIBE_CODES and sid is not None and sid in session.channel_of:
            channel = session.channel_of.pop(sid)
            session.tracker.forget(sid)
            ended = f"subscription {sid} ended by error {code}"
            if channel == BOOK_CHANNEL:
                self.holes.books_missed(
                    session.subscribed,
                    "subscribe_failed",
                    session.last_frame_ns,
                    conn_id=session.conn_id,
                    detail=ended,
                )
            else:
                self.holes.channel_missed(
                    channel,
                    "subscribe_failed",
                    session.last_frame_ns,
                    conn_id=session.conn_id,
                    detail=ended,
                )
            if channel == BOOK_CHANNEL and sid == session.book_sid:
                session.carry_gaps.extend(session.open_gaps.pop(sid, []))
                session.carry_mode = "resubscribe"
                self._drop_sid(session, sid)
                session.subscribed.clear()
            self._stats.resubscribes += 1
            self._wake.set()
        elif code == 16 and isinstance(body.get("market_ticker"), str):
            session.rejected.add(body["market_ticker"])
            self._wake.set()

    def _check_seq(
        self, session: _Session, sid: int, seq: int, recv_ns: int, previous_ns: int
    ) -> tuple[bool, bool]:
        """(gap before this frame, repeat of a seq already delivered) for one sequenced frame."""
        check = session.tracker.check(sid, seq)
        if check.verdict is Verdict.DUPLICATE:
            # Forwarded raw with the repeat flag: ingest stores it once (raw only).
            self._stats.seq_duplicates += 1
            return False, True
        if check.verdict is not Verdict.GAP:
            return False, False
        assert check.expected is not None
        book = sid == session.book_sid
        markets = sorted(session.subscribed) if book else []
        record = gap_fields(
            gatherer=self.gatherer,
            conn_id=session.conn_id,
            sid=sid,
            market_tickers=markets,
            expected_seq=check.expected,
            got_seq=seq,
            detected_ns=recv_ns,
        )
        self._stats.gaps_detected += 1
        record_gap_detected(
            self.gatherer, "orderbook" if book else metric_role(session.channel_of.get(sid))
        )
        self._control(GAP_DETECTED, session, **record)
        log_event(
            log,
            "listener_seq_gap",
            logging.WARNING,
            shard=self.shard,
            conn_id=session.conn_id,
            sid=sid,
            expected=check.expected,
            got=seq,
        )
        detail = f"sid {sid}: expected seq {check.expected}, got {seq}"
        if book:
            self.holes.books_missed(
                session.subscribed, "seq_gap", previous_ns, conn_id=session.conn_id, detail=detail
            )
        elif sid in session.channel_of:
            # No snapshot can repair a global channel: the hole is over as soon as noticed.
            self.holes.channel_blip(
                session.channel_of[sid],
                "seq_gap",
                previous_ns,
                recv_ns,
                conn_id=session.conn_id,
                detail=detail,
            )
        if book:
            # Any market may have lost the delta: every one needs a fresh snapshot.
            session.open_gaps.setdefault(sid, []).append(record)
            session.recovery_mode.setdefault(sid, "get_snapshot")
            session.pending[sid] = set(session.subscribed)
            session.snapshot_due.add(sid)
            self._wake.set()
        return True, False

    def _snapshot_seen(self, session: _Session, sid: int, ticker: str) -> bool:
        """Note a snapshot; True when it answers our `get_snapshot` (stored as `resync`)."""
        waiting = session.pending.get(sid)
        if waiting is None or ticker not in waiting:
            return False
        resync = session.recovery_mode.get(sid, "get_snapshot") == "get_snapshot"
        waiting.discard(ticker)
        if not waiting:
            self._settle(session, sid)
        return resync

    def _forget_pending(self, session: _Session, tickers: Iterable[str]) -> None:
        for sid, waiting in list(session.pending.items()):
            waiting.difference_update(tickers)
            if not waiting:
                self._settle(session, sid)

    def _settle(self, session: _Session, sid: int) -> None:
        session.pending.pop(sid, None)
        session.snapshot_asked.pop(sid, None)  # the next gap's requests count from zero
        mode = session.recovery_mode.pop(sid, "get_snapshot")
        gaps = session.open_gaps.pop(sid, [])
        if gaps:
            self._recovered(session, gaps, mode)

    def _recovered(self, session: _Session, gaps: list[dict[str, Any]], mode: str) -> None:
        now = time.time_ns()
        for record in gaps:
            self._stats.gaps_recovered += 1
            record_gap_recovered(self.gatherer, self.metric_role)
            self._control(GAP_RECOVERED, session, **record, recovered_ns=now, recovery=mode)
        log_event(log, "listener_gaps_recovered", shard=self.shard, gaps=len(gaps), how=mode)

    def _drop_sid(self, session: _Session, sid: int) -> None:
        session.tracker.forget(sid)
        session.channel_of.pop(sid, None)
        session.pending.pop(sid, None)
        session.recovery_mode.pop(sid, None)
        session.snapshot_due.discard(sid)
        session.snapshot_asked.pop(sid, None)
        if session.book_sid == sid:
            session.book_sid = None

    def _emit_hole(self, event: str, fields: dict[str, Any]) -> None:
        """Publish a hole record; one without a session names the shard as its connection."""
        if event == "hole_opened":
            self._stats.holes_opened += 1
        conn_id = fields.get("conn_id") or f"{self.gatherer}-{self.shard}"
        self._stats.control_frames += 1
        self._publisher.add(self._control_stream, control_frame(event, fields, conn_id))

    def _control(self, event: str, session: _Session, **fields: Any) -> None:
        """Publish a control record (docs/listener.md) on the control stream."""
        self._stats.control_frames += 1
        self._publisher.add(self._control_stream, control_frame(event, fields, session.conn_id))


def _last_alive_ns(session: _Session, info: CloseInfo) -> int:
    """The last moment the session is known to have delivered everything sent to it.

    A close the socket reported at once (a close frame, or EOF/RST from the peer, or our own
    shutdown) ends a live connection: nothing sent before it was lost, so the hole starts at the
    close. A close we forced because the connection had gone silent (no pong, no probe reply,
    a command timeout) may end a connection that had been dead for a while: then only the last
    frame read is evidence.
    """
    reason = f"{session.close_reason or ''} {info.reason}".lower()
    silent = any(word in reason for word in ("stale", "timeout", "timed out"))
    if silent or not info.ended_ns:
        return session.last_frame_ns
    return max(session.last_frame_ns, info.ended_ns)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
