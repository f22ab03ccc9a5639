"""`kalshi-data up` end to end: a real simulator child process, a real WebSocket live view."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KALSHI_DATA, REPO, clean_env, run_cli

pytestmark = pytest.mark.timeout(120)


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc, so no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _summary_counts(stdout: str) -> dict[str, int]:
    line = next(x for x in stdout.splitlines() if x.startswith("stopped after"))
    return {
        name: int(value)
        for name, value in re.findall(r"(total|trades|tickers|lifecycle|gaps) (\d+)", line)
    }


def test_up_runs_for_a_duration_and_stops_cleanly(tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    result = run_cli(
        "up", "--duration", "6", "--sim-port", "0", "--sim-markets", "30",
        "--sim-rate", "400", "--sim-seed", "3", "--truth", str(truth), "--book-markets", "10",
        timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    counts = _summary_counts(result.stdout)
    assert counts["total"] > 100, result.stdout
    assert counts["trades"] > 0 and counts["tickers"] > 0, result.stdout
    assert counts["gaps"] == 0, result.stdout
    assert truth.is_dir() and any(truth.iterdir()), "the simulator child wrote no truth"


def test_up_stops_cleanly_on_ctrl_c_and_leaves_no_children() -> None:
    process = subprocess.Popen(
        [KALSHI_DATA, "up", "--sim-port", "0", "--sim-markets", "10", "--sim-rate", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while time.monotonic() < deadline and not children:
            time.sleep(0.5)
            children = _children_of(process.pid)
        assert children, "up started no child process"
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=45)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped after" in stdout
    assert "Traceback" not in stderr
    time.sleep(0.5)
    survivors = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not survivors, f"children still running after up stopped: {survivors}"


def test_up_with_a_busy_port_fails_with_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("up", "--sim-port", str(port), "--duration", "5", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "simulator" in errors[0]


def test_up_with_an_unreadable_key_fails_clearly(tmp_path: Path) -> None:
    env = {
        "KD_KALSHI__KEY_ID": "abc",
        "KD_KALSHI__PRIVATE_KEY_PATH": str(tmp_path / "missing.pem"),
    }
    result = run_cli("up", "--duration", "2", timeout=30, **env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "missing.pem" in result.stderr
