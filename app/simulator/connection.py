"""One WebSocket session: its subscriptions, its outgoing buffer and its injected faults.

Frames are queued as finished JSON payloads and written in one `transport.write` per flush,
each framed by hand (server frames are unmasked, so a header is two to ten bytes); that keeps the
per-frame cost to a few byte copies. Every frame is logged to the truth's `frames.tsv` at the
moment it is handed to the socket, with this connection's id and the frame's sid/seq.

The outgoing buffer is bounded (`max_buffer` bytes, queued plus unsent in the transport): a
client that cannot keep up gets error 25 "Subscription buffer overflow" and is disconnected,
as Kalshi does (kalshi-api.md §3.4), instead of the simulator growing without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from struct import Struct
from typing import Any

import orjson

from app.simulator.recorder import Recorder

_SMALL_TEXT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
_MEDIUM = Struct(">BBH").pack
_LARGE = Struct(">BBQ").pack
OPCODE_TEXT = 0x1
OPCODE_PING = 0x9


def frame_header(opcode: int, length: int) -> bytes:
    """RFC 6455 header of one unmasked, final frame."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _MEDIUM(first, 126, length)
    return _LARGE(first, 127, length)


class Subscription:
    """One sid: a channel and, for market channels, its markets (None = every market)."""

    __slots__ = (
        "channel",
        "conn",
        "deltas",
        "markets",
        "seq",
        "sequenced",
        "sid",
        "skip_ack",
        "yes_price",
    )

    def __init__(
        self,
        conn: Connection,
        sid: int,
        channel: str,
        markets: set[int] | None,
        sequenced: bool,
        skip_ack: bool,
        yes_price: bool = False,
    ) -> None:
        self.conn = conn
        self.sid = sid
        self.channel = channel
        self.markets = markets
        self.sequenced = sequenced
        self.skip_ack = skip_ack
        self.yes_price = yes_price  # use_yes_price: NO levels on the YES scale
        self.seq = 0
        self.deltas = 0


@dataclass
class SeqFaults:
    """Armed seq faults of a connection: pending one-shot counts and periodic settings."""

    skip_pending: dict[int, int] = field(default_factory=dict)  # sid (0 = any) -> count
    repeat_pending: dict[int, int] = field(default_factory=dict)
    skip_every: int = 0
    repeat_every: int = 0
    ignore_snapshots: int = 0  # get_snapshot requests to acknowledge and never answer

    def armed(self) -> bool:
        return bool(
            self.skip_pending or self.repeat_pending or self.skip_every or self.repeat_every
        )


def _take(pending: dict[int, int], sid: int) -> bool:
    for key in (sid, 0):
        left = pending.get(key)
        if left:
            if left == 1:
                del pending[key]
            else:
                pending[key] = left - 1
            return True
    return False


class Connection:
    """Server side of one WebSocket connection."""

    def __init__(
        self,
        conn_id: int,
        transport: asyncio.Transport,
        peer: str,
        authenticated: bool,
        recorder: Recorder,
        max_buffer: int,
    ) -> None:
        self.id = conn_id
        self.transport = transport
        self.peer = peer
        self.authenticated = authenticated
        self.recorder = recorder
        self.max_buffer = max_buffer
        self.subs: dict[int, Subscription] = {}
        self.next_sid = 1
        self.closed = False
        self.close_reason = ""
        self.stalled_until = 0.0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.next_ping = 0.0
        self.faults = SeqFaults()
        self.seq_fault_armed = False
        # Deferred snapshot work: (subscription, market indexes, index them afterwards).
        self.pending: deque[tuple[Subscription, list[int], bool]] = deque()
        self._payloads: list[bytes] = []
        self._sids: list[int] = []
        self._seqs: list[int] = []
        self._queued = 0
        self._prefix = b"%d\t" % conn_id

    # ---- queueing ----------------------------------------------------------------------

    def send(self, payload: bytes, sid: int = 0, seq: int = 0) -> None:
        """Queue one text frame (already formatted JSON)."""
        self._payloads.append(payload)
        self._sids.append(sid)
        self._seqs.append(seq)
        self._queued += len(payload)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(orjson.dumps(message), message.get("sid", 0), message.get("seq", 0))

    def send_seq(self, sub: Subscription, kind: bytes, msg: bytes, faultable: bool) -> None:
        """Queue a sequenced frame: the sid's next seq, through any armed seq fault."""
        sub.seq += 1
        payload = b'{"type":"%s","sid":%d,"seq":%d,"msg":%s}' % (kind, sub.sid, sub.seq, msg)
        if faultable and self.seq_fault_armed and self._seq_fault(sub, payload):
            return
        self._payloads.append(payload)
        self._sids.append(sub.sid)
        self._seqs.append(sub.seq)
        self._queued += len(payload)

    def _seq_fault(self, sub: Subscription, payload: bytes) -> bool:
        """Apply a skip or repeat to this delta; True when the frame must not be queued."""
        faults = self.faults
        sub.deltas += 1
        periodic_skip = faults.skip_every and sub.deltas % faults.skip_every == 0
        if periodic_skip or _take(faults.skip_pending, sub.sid):
            self.recorder.fault(
                {
                    "fault": "skip_seq",
                    "source": "periodic" if periodic_skip else "admin",
                    "conn": self.id,
                    "sid": sub.sid,
                    "seq": sub.seq,
                    "frame": payload.decode(),
                }
            )
            self.seq_fault_armed = faults.armed()
            return True
        periodic_repeat = faults.repeat_every and sub.deltas % faults.repeat_every == 0
        if periodic_repeat or _take(faults.repeat_pending, sub.sid):
            self.recorder.fault(
                {
                    "fault": "repeat_seq",
                    "source": "periodic" if periodic_repeat else "admin",
                    "conn": self.id,
                    "sid": sub.sid,
                    "seq": sub.seq,
                }
            )
            self.send(payload, sub.sid, sub.seq)  # the extra copy; the caller queues the other
        self.seq_fault_armed = faults.armed()
        return False

    # ---- writing -----------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        return self.stalled_until > 0 and time.monotonic() < self.stalled_until

    def buffered(self) -> int:
        return self._queued + (0 if self.closed else self.transport.get_write_buffer_size())

    def flush(self) -> None:
        """Write every queued frame in one transport write and log them to the truth."""
        if self.closed or not self._payloads:
            return
        if self.transport.is_closing():  # the peer went away; the handler will clean up
            self.mark_closed("transport closed")
            self._payloads, self._sids, self._seqs, self._queued = [], [], [], 0
            return
        if self.stalled_until:
            if time.monotonic() < self.stalled_until:
                if self._queued > self.max_buffer:
                    self.overflow()
                return
            self.stalled_until = 0.0
        payloads, sids, seqs = self._payloads, self._sids, self._seqs
        self._payloads, self._sids, self._seqs = [], [], []
        self._queued = 0
        chunks: list[bytes] = []
        append = chunks.append
        small = _SMALL_TEXT_HEADERS
        total = 0
        for payload in payloads:
            size = len(payload)
            total += size
            if size < 126:
                append(small[size])
            elif size < 65536:
                append(_MEDIUM(0x81, 126, size))
            else:
                append(_LARGE(0x81, 127, size))
            append(payload)
        now = time.time_ns()
        self.transport.write(b"".join(chunks))
        self.frames_sent += len(payloads)
        self.bytes_sent += total
        if self.recorder.enabled:
            head = self._prefix + b"%d\ttext\t" % now
            lines = [
                head
                + (b"%d\t%d\t" % (sid, seq) if seq else b"%d\t\t" % sid if sid else b"\t\t")
                + payload
                + b"\n"
                for payload, sid, seq in zip(payloads, sids, seqs, strict=True)
            ]
            self.recorder.frames(b"".join(lines))
        if self.transport.get_write_buffer_size() > self.max_buffer:
            self.overflow()

    def ping(self) -> None:
        """Kalshi's keep-alive: a Ping control frame with payload `heartbeat` (§3.1)."""
        if self.closed or self.stalled or self.transport.is_closing():
            return
        self.flush()
        self.transport.write(frame_header(OPCODE_PING, 9) + b"heartbeat")
        if self.recorder.enabled:
            self.recorder.frames(self._prefix + b"%d\tping\t\t\theartbeat\n" % time.time_ns())

    def overflow(self) -> None:
        """Error 25 on every subscription, then disconnect (the client read too slowly)."""
        if self.closed:
            return
        self.stalled_until = 0.0
        self._payloads, self._sids, self._seqs, self._queued = [], [], [], 0
        for sid in self.subs:
            self.send_json(
                {
                    "type": "error",
                    "sid": sid,
                    "msg": {"code": 25, "msg": "Subscription buffer overflow"},
                }
            )
        self.flush()
        self.drop("overflow")

    def drop(self, reason: str) -> None:
        """Close the TCP connection without a WebSocket close handshake."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self.close_reason = reason
        self.transport.close()

    def mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason

    def log_close_frame(self, code: int) -> None:
        if self.recorder.enabled:
            self.recorder.frames(self._prefix + b"%d\tclose\t\t\t%d\n" % (time.time_ns(), code))
