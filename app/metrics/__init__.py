"""Prometheus metrics of kalshi-data (DESIGN §1.4, docs/metrics.md).

`definitions` holds every metric; `recorders` the typed functions the listener, the ingest and
the jobs call; `exposition` the HTTP servers and Celery multiprocess setup; `streams` the Redis
stream gauges. Recording never does I/O; only `exposition` opens sockets and only `streams` reads
Redis.
"""

from app.config import DEFAULT_PORTS, PROCESS_KINDS, MetricsSettings, ProcessKind
from app.metrics.exposition import (
    MULTIPROC_ENV,
    MetricsConfigError,
    MetricsServer,
    install_celery_hooks,
    mark_child_dead,
    multiproc_environ,
    multiprocess_dir,
    multiprocess_registry,
    prepare_multiproc_dir,
    start_metrics_server,
    start_multiprocess_exporter,
)
from app.metrics.recorders import (
    PublisherMetrics,
    channel_label,
    classify_dead_letter,
    job_label,
    observe_write_seconds,
    record_dead_letters,
    record_drain,
    record_drain_failure,
    record_frame,
    record_gap_detected,
    record_gap_recovered,
    record_job,
    record_partitions_created,
    record_partitions_dropped,
    record_reconnect,
    record_rows,
    record_rows_by_table,
    role_label,
    set_connection_state,
    time_write,
)
from app.metrics.streams import StreamGaugeLoop, refresh_stream_gauges, set_stream_gauges

__all__ = [
    "DEFAULT_PORTS",
    "MULTIPROC_ENV",
    "PROCESS_KINDS",
    "MetricsConfigError",
    "MetricsServer",
    "MetricsSettings",
    "ProcessKind",
    "PublisherMetrics",
    "StreamGaugeLoop",
    "channel_label",
    "classify_dead_letter",
    "install_celery_hooks",
    "job_label",
    "mark_child_dead",
    "multiproc_environ",
    "multiprocess_dir",
    "multiprocess_registry",
    "observe_write_seconds",
    "prepare_multiproc_dir",
    "record_dead_letters",
    "record_drain",
    "record_drain_failure",
    "record_frame",
    "record_gap_detected",
    "record_gap_recovered",
    "record_job",
    "record_partitions_created",
    "record_partitions_dropped",
    "record_reconnect",
    "record_rows",
    "record_rows_by_table",
    "refresh_stream_gauges",
    "role_label",
    "set_connection_state",
    "set_stream_gauges",
    "start_metrics_server",
    "start_multiprocess_exporter",
    "time_write",
]
