"""A small Celery app for the multiprocess metrics tests (a real prefork worker runs it).

The broker URL and key prefix come from the test through the environment, since the worker is
a separate process started with `celery -A tests.metrics.celery_testapp worker`.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from prometheus_client import Gauge

from app.metrics import install_celery_hooks, record_rows

QUEUE = os.environ.get("KD_TEST_METRICS_QUEUE", "kd-metrics-test")

# A live gauge: its per-child file must disappear when the child exits (mark_process_dead).
BUSY = Gauge("kd_test_busy_tasks", "tasks running now", multiprocess_mode="livesum")

app = Celery("kd_metrics_test")
app.conf.update(
    broker_url=os.environ.get("KD_TEST_METRICS_BROKER", "redis://localhost:6379/14"),
    broker_transport_options={"global_keyprefix": os.environ.get("KD_TEST_METRICS_PREFIX", "")},
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
install_celery_hooks()


@app.task(name="kd_test.write_rows")
def write_rows(table: str, rows: int) -> int:
    BUSY.inc()
    try:
        time.sleep(0.05)  # long enough that both children take tasks
        record_rows(table, rows)
        return os.getpid()
    finally:
        BUSY.dec()
