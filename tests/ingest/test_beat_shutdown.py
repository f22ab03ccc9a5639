"""Beat stops cleanly on SIGTERM (exit 0), however the signal falls relative to its ticks."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_env

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("delay_s", [1.3])
def test_beat_exits_zero_on_sigterm(tmp_path: Path, redis_test_url: str, delay_s: float) -> None:
    env = clean_env(
        KD_REDIS_URL=redis_test_url, KD_GATHERER=f"beat{int(delay_s * 10)}", PYTHONUNBUFFERED="1"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
         "-s", str(tmp_path / "schedule"), "--pidfile=", "-l", "INFO"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "beat: Starting" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # signal a running beat (not one still importing): it ticks every second per drain
        # entry, so the signal lands mid-tick sometimes
        assert started.wait(60), "".join(lines)[-3000:]
        time.sleep(delay_s)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    assert process.returncode == 0, output[-3000:]
    assert "closed shelf" not in output


def _scheduler(cls: type, tmp_path: Path):  # type: ignore[no-untyped-def]
    from celery import Celery

    tmp_path.mkdir(parents=True, exist_ok=True)
    app = Celery("beat-test", broker="memory://")
    app.conf.beat_schedule = {"noop": {"task": "noop", "schedule": 60.0}}
    return cls(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=False)


def test_signal_then_finally_double_close_is_harmless(tmp_path: Path) -> None:
    """What beat does on SIGTERM: the handler closes, then the loop's `finally` closes again."""
    from celery.beat import PersistentScheduler

    from workers.beat_scheduler import ShutdownSafeScheduler

    stock = _scheduler(PersistentScheduler, tmp_path / "stock")
    stock.close()
    with pytest.raises(ValueError, match="closed shelf"):
        stock.tick()  # a tick that was running when the signal arrived

    safe = _scheduler(ShutdownSafeScheduler, tmp_path / "safe")
    safe.tick()
    safe.close()
    with pytest.raises(SystemExit):  # a tick after the stop ends beat's loop, even if the
        safe.tick()  # handler's SystemExit was swallowed by a Redis call it interrupted
    safe.close()
    safe.sync()
