"""Celery beat's persistent scheduler, safe to close twice.

On SIGTERM, beat's signal handler closes the scheduler (syncing and closing its shelve file) and
raises SystemExit; the main loop's `finally` then closes it again, and a tick that was running
when the signal arrived may touch the closed shelf. Stock `PersistentScheduler` then raises
"invalid operation on closed shelf" and beat exits 1 on an otherwise clean stop. Here the first
close wins and everything after it is a no-op; the schedule was already persisted by then. A
tick after the close ends beat (SystemExit), in case the handler's own SystemExit was lost.
"""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler


class ShutdownSafeScheduler(PersistentScheduler):
    """`PersistentScheduler` whose close is idempotent and which stops ticking once closed."""

    _closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        super().close()

    def sync(self) -> None:
        if not self._closed:
            super().sync()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self._closed:
            # Closed means a stop was asked. The handler's SystemExit can be lost when it lands
            # inside a Redis call whose cleanup then fails ("I/O operation on closed file",
            # logged as a SchedulingError), and beat would tick on, never sleeping, until
            # SIGKILL: raised again here, it ends beat's loop.
            raise SystemExit()
        return float(super().tick(*args, **kwargs))
