"""Redis Streams transport between the listener and the ingest workers (DESIGN §3).

Listener side (asyncio): `StreamNames.route` picks a frame's stream, `StreamPublisher.add`
batches it, spilling to a local `Journal` rather than ever dropping it.
Ingest side (sync, Celery drain tasks): `drain`, `trim_stream`, `reap_idle_consumers`,
`stream_stats`. The contract (envelope, names, delivery) is in docs/streams.md.
"""

from app.config import StreamSettings
from app.streams.consumers import consumer_name, ensure_group, reap_idle_consumers
from app.streams.deadletters import DeadLetter, parse_dead_letter
from app.streams.drain import DrainResult, Entry, Handler, drain
from app.streams.envelope import (
    SCHEMA_VERSION,
    BatchBuilder,
    EnvelopeError,
    Frame,
    decode_entry,
    encode_entry,
)
from app.streams.health import GroupStats, StreamStats, stream_stats
from app.streams.journal import Journal, JournalError, JournalFull, JournalLocked
from app.streams.names import StreamNames, book_partition, dead_stream_for
from app.streams.publisher import (
    PublisherClosed,
    PublisherStats,
    StreamPublisher,
    open_redis,
)
from app.streams.trim import TrimResult, trim_stream

__all__ = [
    "SCHEMA_VERSION",
    "BatchBuilder",
    "DeadLetter",
    "DrainResult",
    "Entry",
    "EnvelopeError",
    "Frame",
    "GroupStats",
    "Handler",
    "Journal",
    "JournalError",
    "JournalFull",
    "JournalLocked",
    "PublisherClosed",
    "PublisherStats",
    "StreamNames",
    "StreamPublisher",
    "StreamSettings",
    "StreamStats",
    "TrimResult",
    "book_partition",
    "consumer_name",
    "dead_stream_for",
    "decode_entry",
    "drain",
    "encode_entry",
    "ensure_group",
    "open_redis",
    "parse_dead_letter",
    "reap_idle_consumers",
    "stream_stats",
    "trim_stream",
]
