"""Bad configuration and bad arguments end in one clear error line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings
from tests.conftest import run_cli


def _assert_one_clear_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_malformed_yaml_is_one_error_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kalshi: [unclosed\n")
    line = _assert_one_clear_error(run_cli("--config", str(config), "status"), 2)
    assert "not valid YAML" in line and str(config) in line


def test_invalid_value_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kalshi:\n  tier: gold\n")
    line = _assert_one_clear_error(run_cli("--config", str(config), "status"), 2)
    assert "kalshi.tier" in line


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("simulatr:\n  markets: 3\n")
    line = _assert_one_clear_error(run_cli("--config", str(config), "status"), 2)
    assert "simulatr" in line


def test_missing_config_file(tmp_path: Path) -> None:
    line = _assert_one_clear_error(run_cli("--config", str(tmp_path / "nope.yaml"), "status"), 2)
    assert "nope.yaml" in line


def test_bad_environment_value_is_refused() -> None:
    result = run_cli("status", KD_SIMULATOR__MARKETS="many")
    line = _assert_one_clear_error(result, 2)
    assert "simulator.markets" in line


def test_unknown_command_and_bad_option() -> None:
    _assert_one_clear_error(run_cli("no-such-command"), 2)
    _assert_one_clear_error(run_cli("up", "--duration", "soon"), 2)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("kalshi:\n  tier: premier\nsimulator:\n  markets: 5\n")
    monkeypatch.setenv("KD_SIMULATOR__MARKETS", "9")
    settings = load_settings(config)
    assert settings.kalshi.tier == "premier"
    assert settings.simulator.markets == 9


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "list.yaml"
    config.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(config)


def test_key_path_expands_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_KALSHI__PRIVATE_KEY_PATH", "~/k.pem")
    monkeypatch.setenv("KD_KALSHI__KEY_ID", "abc")
    settings = load_settings(None)
    assert settings.kalshi.private_key_path == Path.home() / "k.pem"
    assert settings.kalshi.has_credentials


@pytest.mark.parametrize("name", ["example.yaml", "demo-kalshi.yaml"])
def test_shipped_config_files_load(name: str) -> None:
    settings = load_settings(Path(__file__).resolve().parents[2] / "configs" / name)
    assert settings.metrics.host == "127.0.0.1"
    assert settings.kalshi.key_id is None, "no credentials are ever shipped"


# -- partitions: retention windows and maintenance periods ------------------------------------
def test_retention_overrides_merge_with_role_defaults(tmp_path: Path) -> None:
    from app.db.tables import GATHERER_RETENTION_DAYS, PRODUCTION_RETENTION_DAYS

    config = tmp_path / "c.yaml"
    config.write_text(
        "partitions:\n  retention_days:\n    tickers: 3\n    trades: null\n  days_ahead: 9\n"
    )
    retention = load_settings(config).partitions.retention()
    assert retention == {**GATHERER_RETENTION_DAYS, "tickers": 3, "trades": None}
    assert retention != dict(GATHERER_RETENTION_DAYS)  # the overrides did change something
    assert load_settings(config).partitions.days_ahead == 9

    config.write_text("partitions:\n  role: production\n")
    assert load_settings(config).partitions.retention() == dict(PRODUCTION_RETENTION_DAYS)


def test_partition_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_PARTITIONS__RETENTION_DAYS__TICKERS", "null")
    monkeypatch.setenv("KD_PARTITIONS__RETENTION_DAYS__ORDERBOOK_DELTAS", "2")
    monkeypatch.setenv("KD_PARTITIONS__DROP_EXPIRED_INTERVAL_S", "120")
    monkeypatch.setenv("KD_STREAMS__TRIM_INTERVAL_S", "15")
    settings = load_settings(None)
    assert settings.partitions.retention()["tickers"] is None
    assert settings.partitions.retention()["orderbook_deltas"] == 2
    assert settings.partitions.drop_expired_interval_s == 120
    assert settings.streams.trim_interval_s == 15


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("retention_days:\n    tradez: 3", "unknown time-series table 'tradez'"),
        ("retention_days:\n    markets: 3", "unknown time-series table 'markets'"),
        ("retention_days:\n    tickers: -1", "retention of tickers must be >= 0 days"),
        ("retention_days:\n    tickers: soon", "partitions.retention_days.tickers"),
        ("days_back: 40", "shorter than days_back (40)"),
        ("drop_expired_interval_s: 0", "partitions.drop_expired_interval_s"),
    ],
)
def test_bad_partition_settings_are_one_clear_error(
    tmp_path: Path, yaml_text: str, expected: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"partitions:\n  {yaml_text}\n")
    with pytest.raises(ConfigError, match="partitions") as caught:
        load_settings(config)
    assert expected in str(caught.value)


def test_unknown_retention_table_stops_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("partitions:\n  retention_days:\n    tradez: 3\n")
    line = _assert_one_clear_error(run_cli("--config", str(config), "status"), 2)
    assert "partitions.retention_days" in line and "'tradez'" in line and "known:" in line


@pytest.mark.parametrize("yaml_text", ["drain_interval_s: 0", "dead_letter_interval_s: -5"])
def test_bad_drain_periods_are_one_clear_error(tmp_path: Path, yaml_text: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"streams:\n  {yaml_text}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert f"streams.{yaml_text.split(':')[0]}" in str(caught.value)
