"""`kalshi-data sim` as a user runs it: settings, clear errors, clean shutdown with truth."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from app.simulator.truth import load_truth
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--markets", "0"], "error: markets must be at least 1"),
        (["--rate", "0"], "error: rate must be greater than 0"),
        (["--rate-limit", "fast"], "error: rate limit must be off, a tier"),
        (["--drop-every", "-1"], "error: --drop-every must be positive"),
        (["--ping-interval", "0"], "error: ping-interval must be greater than 0"),
        (["--format", "ancient"], "error: Invalid value for '--format'"),
        (["--historical-cutoff-s", "-1"], "error: historical-cutoff-s must be 0 or more"),
        (["--historical-cutoff-s", "nan"], "error: historical-cutoff-s must be 0 or more"),
    ],
)
def test_bad_flags_give_one_clear_error(flags, message):
    result = run_cli("sim", "--port", "0", *flags, timeout=30)
    assert result.returncode != 0
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unusable_key_and_busy_port_are_user_errors(tmp_path):
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    result = run_cli("sim", "--port", "0", "--auth-public-key", str(not_a_key), timeout=30)
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: --auth-public-key:") and "Traceback" not in result.stderr
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("sim", "--port", str(port), timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_settings_give_defaults_and_sigterm_flushes_truth(sim_factory, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("simulator:\n  markets: 9\n  seed: 5\n  format: legacy\n")
    sim = sim_factory(
        "--rate", "500", env={"KD_SIMULATOR__RATE": "123"}, global_args=["--config", str(config)]
    )
    assert sim.line == f"simulator listening on http://127.0.0.1:{sim.port}"
    state = sim.state()
    assert state["markets"]["count"] >= 9 and state["seed"] == 5 and state["format"] == "legacy"
    while sim.state()["step"] < 50:
        time.sleep(0.05)
    assert sim.stop() == 0
    assert sim.truth is not None
    meta = orjson.loads((sim.truth / "meta.json").read_bytes())
    assert (meta["markets"], meta["seed"], meta["format"], meta["rate"]) == (9, 5, "legacy", 500)
    truth = load_truth(sim.truth)
    assert truth.final is not None and truth.final.reason == "shutdown"
    assert truth.book_changes, "order flow ran and was flushed on SIGTERM"
    assert len(truth.final.statuses) == truth.market_count


def test_one_description_gives_every_flag_and_setting():
    """Issue 9 item 10: `SimOptions` is the only description; flags and settings follow it."""
    from app.config import SimulatorSettings
    from app.simulator.options import SimOptions, flag_of

    assert SimulatorSettings.model_fields.keys() == SimOptions.model_fields.keys()
    help_text = run_cli("sim", "--help", timeout=30).stdout
    for name in SimOptions.model_fields:
        assert flag_of(name).flag in help_text, name
        assert f"simulator.{name}" in help_text.replace("\n", "").replace(" ", ""), name


def test_every_setting_reaches_the_run_and_flags_win(sim_factory, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "simulator:\n  ack_consumes_seq: true\n  error_body: flat\n  rate_limit: expert\n"
        "  market_lifetime_s: 90\n"
    )
    sim = sim_factory(
        "--no-ack-consumes-seq", "--markets", "4", global_args=["--config", str(config)]
    )
    assert sim.truth is not None
    meta = orjson.loads((sim.truth / "meta.json").read_bytes())
    assert meta["ack_consumes_seq"] is False  # the flag beats the setting
    assert meta["error_body"] == "flat" and meta["rate_limit_tokens_per_s"] == 600
    assert meta["market_lifetime_ns"] == 90_000_000_000
    assert set(sim.get("/markets/KXNOPE-E1-T1").json()) == {"code", "message"}
    result = run_cli("sim", "--port", "0", timeout=30, KD_SIMULATOR__RATE_LIMIT="fast")
    assert result.returncode != 0 and "simulator.rate_limit" in result.stderr
    assert "Traceback" not in result.stderr
