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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.config import ListenerSettings
from app.kalshi.auth import Signer
from app.kalshi.backoff import Backoff
from app.kalshi.errors import KalshiError, WsClosed, WsReplyTimeout
from app.kalshi.ws import CloseInfo, KalshiWebSocket, RawFrame
from app.kalshi.ws_errors import WsError, WsMarketNotFound
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
from app.listener.rejections import RejectedMarkets
from app.listener.sequence import AckSeqRule, SeqPosition, Verdict
from app.listener.stats import ConnectionStats, ListenerStats
from app.listener.subscription import BOOK_CHANNEL, Subscription
from app.logs import log_event
from app.metrics import record_gap_detected, record_gap_recovered, record_reconnect
from app.streams import Frame, JournalFull, StreamNames, StreamPublisher

log = logging.getLogger("kalshi_data.listener")

REPLY_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error"})
# The server dropped the subscription (kalshi-api.md §3.4); 25 also closes the connection.
RESUBSCRIBE_CODES = frozenset({10, 17})
TICK_S = 1.0

SessionOpened = Callable[[str], Awaitable[None]]  # (conn_id)


@dataclass
class _Session:
    """State of one WebSocket session; thrown away at disconnect."""

    ws: KalshiWebSocket
    conn_id: str
    opened_ns: int
    last_frame_ns: int = 0  # wall time the newest frame was read (start of a disconnect hole)
    subs: dict[int, Subscription] = field(default_factory=dict)  # acknowledged sids
    orphans: dict[int, SeqPosition] = field(default_factory=dict)  # sids nobody announced
    book_sid: int | None = None
    subscribed: set[str] = field(default_factory=set)  # markets on book_sid (optimistic)
    carry_gaps: list[dict[str, Any]] = field(default_factory=list)  # for the next book sid
    carry_mode: str = "reconnect"
    refused: set[str] = field(default_factory=set)  # code 16 seen in a frame
    last_frame: float = field(default_factory=time.monotonic)
    close_reason: str | None = None

    @property
    def book(self) -> Subscription | None:
        return self.subs.get(self.book_sid) if self.book_sid is not None else None

    def channels(self) -> set[str]:
        return {sub.channel for sub in self.subs.values()}


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
        started_ns: int | None = None,
        births: MarketBirths | None = None,
        on_session_opened: SessionOpened | None = None,
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
        # Markets the exchange refused (code 16), retried with backoff (item 1 of issue 9).
        self.rejections = RejectedMarkets(
            settings.refused_retry_base_s, settings.refused_retry_max_s
        )
        self._ack_seq = AckSeqRule(settings.ack_seq)
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
        self._on_session_opened = on_session_opened
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
            self.rejections.forget(removed)
            self.conn_stats.rejected_markets = len(self.rejections)
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
        if self._on_session_opened is not None:
            # Recorded for a successor (the heartbeat) before anything is published about it,
            # so a kill -9 right after this cannot leave a session nobody will close.
            await self._on_session_opened(conn_id)
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
        for sub in session.subs.values():
            self._carry_gaps.extend(sub.recovery.take_gaps())
        self._carry_gaps.extend(session.carry_gaps)
        self._session = None
        # What the exchange sent after the last frame read reached no one (docs/holes.md).
        cause = "listener_down" if session.close_reason == "shutdown" else "disconnect"
        last_seen = _last_alive_ns(session, info)
        with contextlib.suppress(JournalFull):
            if self.role == "global":
                for channel in sorted(session.channels()):
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
        for ticker in sorted(session.refused):
            if ticker in self.desired:
                self._refuse(session, ticker, "frame")
        session.refused.clear()
        if self.role == "global":
            await self._reconcile_global(session)
        else:
            await self._reconcile_book(session)
            await self._recover(session)

    async def _recover(self, session: _Session) -> None:
        """Do what the book subscription's gap recovery asks (app/listener/recovery.py):
        `get_snapshot` for its markets, again after `snapshot_timeout_s` up to
        `snapshot_retries` times, then a fresh subscription (new sid, every market's snapshot)."""
        book = session.book
        if book is None:
            return
        recovery = book.recovery
        now = time.monotonic()
        action = recovery.next_action(
            now, self._settings.snapshot_timeout_s, self._settings.snapshot_retries
        )
        if action.overdue:
            log_event(
                log,
                "listener_snapshot_overdue",
                logging.WARNING,
                shard=self.shard,
                sid=book.sid,
                requests=recovery.requests,
                missing=len(recovery.pending),
            )
            self._stats.snapshot_timeouts += 1
        if action.kind == "resubscribe":
            await self._resubscribe_book(session, "resubscribe")
            return
        if action.kind != "ask":
            return
        self._stats.snapshot_requests += 1
        recovery.asked(now)
        batch = self._settings.command_batch
        for start in range(0, len(action.markets), batch):
            chunk = list(action.markets[start : start + batch])
            try:
                await session.ws.get_snapshot(book.sid, chunk)
            except WsError as exc:
                self._count_error(exc)
                log_event(
                    log,
                    "listener_get_snapshot_failed",
                    logging.WARNING,
                    shard=self.shard,
                    sid=book.sid,
                    code=exc.error_code,
                    error=exc.message,
                )
                await self._resubscribe_book(session, "resubscribe")
                return

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
        live = session.channels()
        missing = [c for c in self.channels if c not in live]
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
        now = time.monotonic()
        to_add = sorted(self.desired - session.subscribed - self.rejections.waiting(now))
        to_delete = sorted(session.subscribed - self.desired)
        if to_delete:
            if session.book_sid is not None and not (session.subscribed - set(to_delete)):
                await self._unsubscribe_book(session)
            elif session.book_sid is not None:
                for start in range(0, len(to_delete), batch):
                    chunk = to_delete[start : start + batch]
                    if await self._delete_markets(session, chunk):
                        session.subscribed.difference_update(chunk)
                        self._forget_pending(session, chunk)
            else:
                session.subscribed.difference_update(to_delete)
        # Markets refused before are asked for alone, so that they cannot hold up the rest.
        retry = [t for t in to_add if t in self.rejections]
        fresh = [t for t in to_add if t not in self.rejections]
        for start in range(0, len(fresh), batch):
            if not await self._add_markets(session, fresh[start : start + batch]):
                break
        for ticker in retry:
            if not await self._add_markets(session, [ticker]):
                break
        self.conn_stats.subscribed_markets = len(session.subscribed)

    async def _add_markets(self, session: _Session, chunk: list[str]) -> bool:
        """Subscribe (or add) `chunk`; a code-16 refusal is narrowed down to the markets the
        exchange does not know (named, or found by halving the chunk), which wait for their
        retry while the others are subscribed. False after any other error."""
        parts = [chunk]
        while parts:
            part = [t for t in parts.pop() if t in self.desired and t not in session.subscribed]
            if not part:
                continue
            # Optimistic: a gap seen before the ack must also re-snapshot these markets.
            session.subscribed.update(part)
            command = "subscribe" if session.book_sid is None else "add_markets"
            try:
                if session.book_sid is None:
                    await session.ws.subscribe(
                        [BOOK_CHANNEL],
                        market_tickers=part,
                        use_yes_price=self._settings.use_yes_price,
                    )
                else:
                    await session.ws.update_subscription(session.book_sid, "add_markets", part)
            except WsMarketNotFound as exc:
                session.subscribed.difference_update(part)
                self._count_error(exc)
                named = exc.market_ticker
                if named in part:
                    self._refuse(session, named, command)
                    parts.append([t for t in part if t != named])
                elif len(part) == 1:
                    self._refuse(session, part[0], command)
                else:  # the exchange did not say which: halve until it is one market
                    self._stats.refusal_splits += 1
                    middle = len(part) // 2
                    parts.extend((part[middle:], part[:middle]))
                continue
            except WsError as exc:
                session.subscribed.difference_update(part)
                self._command_failed(session, exc, command, part)
                return False
            for ticker in self.rejections.accepted(part):
                log_event(log, "listener_market_accepted", shard=self.shard, ticker=ticker)
        return True

    async def _delete_markets(self, session: _Session, chunk: list[str]) -> bool:
        sid = session.book_sid
        if sid is None:
            return False
        try:
            await session.ws.update_subscription(sid, "delete_markets", chunk)
        except WsMarketNotFound as exc:
            # A market the exchange does not know is not on the subscription either.
            self._count_error(exc)
            return True
        except WsError as exc:
            self._command_failed(session, exc, "delete_markets", chunk)
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
        self._end_book_sid(session, mode)
        await self._reconcile_book(session)

    def _end_book_sid(self, session: _Session, mode: str) -> None:
        """The book sid is gone: its open gaps wait for the next subscription's snapshots."""
        book = session.book
        if book is not None:
            session.carry_gaps.extend(book.recovery.take_gaps())
            session.carry_mode = mode
        if session.book_sid is not None:
            self._drop_sid(session, session.book_sid)
        session.subscribed.clear()

    def _command_failed(
        self, session: _Session, exc: WsError, command: str, chunk: list[str]
    ) -> None:
        """Error replies per code (kalshi-api.md §3.4, CM-8); code 16 is `_add_markets`'."""
        self._count_error(exc)
        if exc.terminal and session.book_sid is not None:
            # 10/17: the subscription is gone; subscribe afresh on the next tick.
            self.holes.books_missed(
                session.subscribed,
                "subscribe_failed",
                session.last_frame_ns,
                conn_id=session.conn_id,
                detail=f"{command} failed with code {exc.error_code}: subscription ended",
            )
            self._end_book_sid(session, "resubscribe")
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

    def _refuse(self, session: _Session, ticker: str, where: str) -> None:
        """The exchange does not know `ticker` (code 16): not captured until a retry takes.

        It stays wanted (the registry names it), so its hole stays open: a market the
        registry lists and the exchange refuses is a known gap, not a forgotten market.
        """
        now_ns = time.time_ns()
        if ticker in session.subscribed:
            session.subscribed.discard(ticker)
            self.holes.books_missed(
                [ticker],
                "subscribe_failed",
                now_ns,
                conn_id=session.conn_id,
                detail="market not found (16)",
                lead=False,
            )
        self._forget_pending(session, [ticker])
        entry = self.rejections.refuse(ticker, time.monotonic(), now_ns)
        self._stats.market_refusals += 1
        self.conn_stats.rejected_markets = len(self.rejections)
        log_event(
            log,
            "listener_market_refused",
            logging.WARNING,
            shard=self.shard,
            ticker=ticker,
            reason=f"market not found (16) on {where}",
            refusals=entry.refusals,
            retry_in_s=round(entry.retry_at - time.monotonic(), 3),
        )

    def retry_refused(self) -> int:
        """A registry refresh: every refused market is asked for again on the next tick."""
        count = self.rejections.retry_all(time.monotonic())
        if count:
            self._wake.set()
        return count

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
        gap = resync = repeat = yes_price = False
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
            sub = session.subs.get(sid) if sid is not None else None
            if msg_type in REPLY_TYPES:
                gap = self._on_reply(
                    session, msg_type, message, body, frame.received_ns, previous_ns
                )
            elif sid is not None and seq is not None:
                gap, repeat = self._check_seq(session, sid, seq, frame.received_ns, previous_ns)
                if msg_type == "orderbook_snapshot" and ticker is not None and sub is not None:
                    resync = self._snapshot_seen(session, sub, ticker)
                    if sid == session.book_sid:
                        self.holes.book_resumed(ticker, frame.received_ns)
            yes_price = sub is not None and sub.yes_price and msg_type not in REPLY_TYPES
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
            Frame(
                raw, frame.received_ns, session.conn_id, sid, seq, gap, resync, repeat, yes_price
            ),
        )

    def _on_reply(
        self,
        session: _Session,
        msg_type: str,
        message: dict[str, Any],
        body: Any,
        recv_ns: int,
        previous_ns: int,
    ) -> bool:
        """Bookkeeping of a reply; True when an ack's seq shows frames were lost before it."""
        if msg_type == "subscribed" and isinstance(body, dict):
            sid, channel = _int(body.get("sid")), body.get("channel")
            if sid is None or not isinstance(channel, str):
                return False
            book = channel == BOOK_CHANNEL
            sub = Subscription(sid, channel, yes_price=book and self._settings.use_yes_price)
            session.subs[sid] = sub
            session.orphans.pop(sid, None)
            if not book:
                self.holes.channel_resumed(channel, recv_ns)
                return False
            session.book_sid = sid
            self._books_live = True
            if session.carry_gaps:
                wanted = self.desired - self.rejections.waiting(time.monotonic())
                sub.recovery.carry(session.carry_gaps, session.carry_mode, wanted)
                session.carry_gaps = []
        elif msg_type == "ok":
            sid, seq = _int(message.get("sid")), _int(message.get("seq"))
            acked = session.subs.get(sid) if sid is not None else None
            if acked is not None and seq is not None:
                check = self._ack_seq.judge(acked.position, seq)
                if check.verdict is Verdict.GAP:
                    assert check.expected is not None
                    self._gap(session, acked.sid, check.expected, seq, recv_ns, previous_ns)
                    return True
        elif msg_type == "error" and not _int(message.get("id")):
            self._on_async_error(session, message, body)
        return False

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
        sub = session.subs.get(sid) if sid is not None else None
        if code in RESUBSCRIBE_CODES and sub is not None:
            ended = f"subscription {sub.sid} ended by error {code}"
            if sub.is_book:
                self.holes.books_missed(
                    session.subscribed,
                    "subscribe_failed",
                    session.last_frame_ns,
                    conn_id=session.conn_id,
                    detail=ended,
                )
            else:
                self.holes.channel_missed(
                    sub.channel,
                    "subscribe_failed",
                    session.last_frame_ns,
                    conn_id=session.conn_id,
                    detail=ended,
                )
            if sub.sid == session.book_sid:
                self._end_book_sid(session, "resubscribe")
            else:
                self._drop_sid(session, sub.sid)
            self._stats.resubscribes += 1
            self._wake.set()
        elif code == 16 and isinstance(body.get("market_ticker"), str):
            session.refused.add(body["market_ticker"])
            self._wake.set()

    def _check_seq(
        self, session: _Session, sid: int, seq: int, recv_ns: int, previous_ns: int
    ) -> tuple[bool, bool]:
        """(gap before this frame, repeat of a seq already delivered) for one sequenced frame."""
        sub = session.subs.get(sid)
        position = (
            sub.position if sub is not None else session.orphans.setdefault(sid, SeqPosition(None))
        )
        check = position.check(seq)
        if check.verdict is Verdict.DUPLICATE:
            # Forwarded raw with the repeat flag: ingest stores it once (raw only).
            self._stats.seq_duplicates += 1
            return False, True
        if check.verdict is not Verdict.GAP:
            return False, False
        assert check.expected is not None
        self._gap(session, sid, check.expected, seq, recv_ns, previous_ns)
        return True, False

    def _gap(
        self, session: _Session, sid: int, expected: int, got: int, recv_ns: int, previous_ns: int
    ) -> None:
        """Seqs expected..got-1 of `sid` never came: record it, open the hole, recover."""
        sub = session.subs.get(sid)
        book = sub is not None and sid == session.book_sid
        markets = sorted(session.subscribed) if book else []
        record = gap_fields(
            gatherer=self.gatherer,
            conn_id=session.conn_id,
            sid=sid,
            market_tickers=markets,
            expected_seq=expected,
            got_seq=got,
            detected_ns=recv_ns,
        )
        self._stats.gaps_detected += 1
        record_gap_detected(
            self.gatherer, "orderbook" if book else metric_role(sub.channel if sub else None)
        )
        self._control(GAP_DETECTED, session, **record)
        log_event(
            log,
            "listener_seq_gap",
            logging.WARNING,
            shard=self.shard,
            conn_id=session.conn_id,
            sid=sid,
            expected=expected,
            got=got,
        )
        detail = f"sid {sid}: expected seq {expected}, got {got}"
        if sub is not None and book:
            self.holes.books_missed(
                session.subscribed, "seq_gap", previous_ns, conn_id=session.conn_id, detail=detail
            )
            # Any market may have lost the delta: every one needs a fresh snapshot.
            sub.recovery.gap(record, session.subscribed)
            self._wake.set()
        elif sub is not None:
            # No snapshot can repair a global channel: the hole is over as soon as noticed.
            self.holes.channel_blip(
                sub.channel, "seq_gap", previous_ns, recv_ns, conn_id=session.conn_id, detail=detail
            )

    def _snapshot_seen(self, session: _Session, sub: Subscription, ticker: str) -> bool:
        """Note a snapshot; True when it answers our `get_snapshot` (stored as `resync`)."""
        resync, settled = sub.recovery.snapshot(ticker)
        if settled is not None:
            self._recovered(session, settled.gaps, settled.mode)
        return resync

    def _forget_pending(self, session: _Session, tickers: Iterable[str]) -> None:
        tickers = list(tickers)
        for sub in session.subs.values():
            settled = sub.recovery.forget(tickers)
            if settled is not None:
                self._recovered(session, settled.gaps, settled.mode)

    def _recovered(self, session: _Session, gaps: list[dict[str, Any]], mode: str) -> None:
        now = time.time_ns()
        for record in gaps:
            self._stats.gaps_recovered += 1
            record_gap_recovered(self.gatherer, self.metric_role)
            self._control(GAP_RECOVERED, session, **record, recovered_ns=now, recovery=mode)
        log_event(log, "listener_gaps_recovered", shard=self.shard, gaps=len(gaps), how=mode)

    def _drop_sid(self, session: _Session, sid: int) -> None:
        session.subs.pop(sid, None)
        session.orphans.pop(sid, None)
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
