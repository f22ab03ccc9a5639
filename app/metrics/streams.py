"""Redis stream gauges: length, lag, pending and oldest-pending age per stream and group.

Why gauges refreshed by a loop and not a custom collector: Celery prefork workers run
prometheus_client in multiprocess mode, where custom collectors are not collected
(design-facts §6). So `refresh_stream_gauges` calls `app.streams.stream_stats` and sets
`mostrecent` gauges; the multiprocess exporter runs it every `stream_refresh_s` in a thread
(`StreamGaugeLoop`), and a beat task or the listener may call it too: the freshest value wins.
Read-only on Redis; never raises for one unreachable stream (it counts the error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis

from app.metrics import definitions as d
from app.streams import StreamStats, stream_stats

log = logging.getLogger(__name__)


def set_stream_gauges(stats: StreamStats) -> None:
    d.STREAM_LENGTH.labels(stats.stream).set(stats.length)
    for group in stats.groups:
        labels = (stats.stream, group.name)
        d.STREAM_PENDING.labels(*labels).set(group.pending)
        d.STREAM_CONSUMERS.labels(*labels).set(group.consumers)
        # Redis cannot compute lag after some XDEL/XTRIM; keep the last known value then.
        if group.lag is not None:
            d.STREAM_LAG.labels(*labels).set(group.lag)
        age_ms = group.oldest_pending_age_ms or 0
        d.STREAM_OLDEST_PENDING_AGE.labels(*labels).set(age_ms / 1000.0)


def refresh_stream_gauges(client: redis.Redis, streams: Sequence[str]) -> int:
    """Refresh the gauges of every stream in `streams`; return how many refreshed cleanly."""
    refreshed = 0
    for stream in streams:
        try:
            stats = stream_stats(client, stream)
        except redis.RedisError as exc:
            d.STREAM_STATS_ERRORS.labels(stream).inc()
            log.warning("stream gauges of %s not refreshed: %s", stream, exc)
            continue
        set_stream_gauges(stats)
        refreshed += 1
    if refreshed:
        d.STREAM_STATS_REFRESHED.set(time.time())
    return refreshed


class StreamGaugeLoop:
    """A daemon thread calling `refresh_stream_gauges` every `interval_s` until `stop()`.

    `streams` is a callable so the set can follow configuration (e.g. book partitions).
    """

    def __init__(
        self,
        client: redis.Redis,
        streams: Callable[[], Sequence[str]],
        interval_s: float,
    ) -> None:
        self.client = client
        self.streams = streams
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kd-stream-gauges", daemon=True)

    def start(self) -> StreamGaugeLoop:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                refresh_stream_gauges(self.client, self.streams())
            except Exception:  # the loop must outlive any one bad refresh
                log.exception("stream gauge refresh failed")
            self._stop.wait(self.interval_s)
