"""The listener's Prometheus wiring: its `/metrics` server and the once-a-second sync.

Hot path cost: `_on_frame` only bumps two `collections.Counter` entries of `ListenerStats`
(frames and bytes per message type) that it keeps anyway; `ListenerMetrics.sync`, run every
second by the listener (and once more at shutdown), turns their increments into
`kd_listener_frames_total` / `kd_listener_frame_bytes_total`, mirrors the publisher's totals
(`PublisherMetrics`), the capture holes opened (`kd_listener_holes_opened_total`) and the
code-16 refusals (`kd_listener_market_refusals_total`), and sets the per-connection gauges, the
open-hole gauge and the refused-market gauge. Rare events (reconnects, gaps) are
recorded where they happen. Labels: `role` is the metric role (orderbook, trade, ticker,
lifecycle, other) and `connection` the shard name, never a conn_id (docs/metrics.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import Counter

from app.config import MetricsSettings
from app.listener.stats import ListenerStats
from app.logs import log_event
from app.metrics import (
    MetricsConfigError,
    MetricsServer,
    PublisherMetrics,
    record_holes_opened,
    set_connection_state,
    set_open_holes,
    start_metrics_server,
)
from app.metrics import definitions as d
from app.metrics.recorders import channel_label
from app.streams import PublisherStats

log = logging.getLogger("kalshi_data.listener")

# WebSocket replies to our commands (subscribed, ok, error, ...) are counted as `control`.
CONTROL_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error", "list_subscriptions"})


def metric_role(channel: str | None) -> str:
    """The `role` label of a subscription channel."""
    if channel is None:
        return "other"
    if channel.startswith("orderbook"):
        return "orderbook"
    if channel == "trade":
        return "trade"
    if channel.startswith("ticker"):
        return "ticker"
    if "lifecycle" in channel:
        return "lifecycle"
    return "other"


def connection_role(role: str, channels: Iterable[str]) -> str:
    """The `role` label of a connection: orderbook shards, else its first channel's role."""
    if role == "orderbook":
        return "orderbook"
    return metric_role(next(iter(channels), None))


def frame_channel(msg_type: str) -> str:
    """The `channel` label of a `ListenerStats.frames_by_type` key."""
    return "control" if msg_type in CONTROL_TYPES else channel_label(msg_type)


def start_listener_metrics(settings: MetricsSettings) -> MetricsServer | None:
    """Serve `/metrics` on the listener port, or None when disabled or impossible.

    A port already in use (or a misconfigured environment) never stops the listener: capture
    matters more than its metrics, so this logs a warning and the listener runs without them.
    """
    if not settings.enabled:
        return None
    try:
        server = start_metrics_server(settings, "listener")
    except (OSError, MetricsConfigError) as exc:
        log_event(
            log,
            "listener_metrics_unavailable",
            logging.WARNING,
            host=settings.host,
            port=settings.port_for("listener"),
            error=str(exc),
        )
        return None
    log_event(log, "listener_metrics_serving", url=server.url)
    return server


class ListenerMetrics:
    """Turns one listener's `ListenerStats` and publisher stats into Prometheus values."""

    def __init__(self, gatherer: str) -> None:
        self.gatherer = gatherer
        self.publisher = PublisherMetrics(gatherer)
        self._frames: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._holes_opened = 0
        self._refusals = 0

    def sync(
        self,
        stats: ListenerStats,
        publisher: PublisherStats | None = None,
        *,
        open_holes: int | None = None,
    ) -> None:
        """Add the stats' increments to the counters and set the gauges.

        `open_holes` is the number of capture holes open now over every connection manager
        (`len(manager.holes.open_holes)` summed); the stats only count holes opened, so the
        caller passes it. None leaves `kd_listener_open_holes` as it was.
        """
        self._advance(stats.frames_by_type, self._frames, d.LISTENER_FRAMES)
        self._advance(stats.bytes_by_type, self._bytes, d.LISTENER_FRAME_BYTES)
        opened, last = stats.holes_opened, self._holes_opened
        record_holes_opened(self.gatherer, opened - last if opened >= last else opened)
        self._holes_opened = opened
        refusals, last = stats.market_refusals, self._refusals
        if refusals > last:
            d.LISTENER_MARKET_REFUSALS.labels(self.gatherer).inc(refusals - last)
        self._refusals = refusals
        d.LISTENER_REFUSED_MARKETS.labels(self.gatherer).set(
            sum(conn.rejected_markets for conn in stats.connections.values())
        )
        if open_holes is not None:
            set_open_holes(self.gatherer, open_holes)
        if publisher is not None:
            self.publisher.update(publisher)
        for conn in stats.connections.values():
            set_connection_state(
                self.gatherer,
                conn.metric_role,
                conn.shard,
                subscribed_markets=conn.subscribed_markets,
                idle_s=conn.idle_s(),
                connected=conn.connected,
            )

    def _advance(self, totals: dict[str, int], last: dict[str, int], counter: Counter) -> None:
        for msg_type, total in list(totals.items()):
            step = total - last.get(msg_type, 0)
            if step > 0:
                counter.labels(self.gatherer, frame_channel(msg_type)).inc(step)
                last[msg_type] = total
