"""`kalshi-data status` as a user runs it: real subprocess, real sockets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.conftest import KeyPair, run_cli
from tests.kalshi.peers import Received, Reply, ScriptedHttpServer, verify_kalshi_signature

STATUS = {"exchange_active": True, "trading_active": False, "exchange_estimated_resume_time": None}
CUTOFF = {
    "market_settled_ts": "2025-11-01T00:00:00Z",
    "trades_created_ts": "2025-11-02T00:00:00Z",
    "orders_updated_ts": "2025-11-03T00:00:00Z",
}


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert any(line.startswith("hint:") for line in result.stderr.splitlines())
    return errors[0]


def _exchange(request: Received) -> Reply:
    if request.path == "/trade-api/v2/exchange/status":
        return Reply(body=STATUS)
    if request.path == "/trade-api/v2/historical/cutoff":
        return Reply(body=CUTOFF)
    return Reply(404, {"code": "not_found", "message": "no such path"})


def test_unreachable_host_is_one_clear_error(port: int) -> None:
    url = f"http://127.0.0.1:{port}/trade-api/v2"
    result = run_cli("status", "--rest-url", url, "--retries", "0")
    line = _one_error_line(result)
    assert line == f"error: cannot reach {url}: connection refused"
    assert "--rest-url" in result.stderr  # the hint says how to point elsewhere


def test_unreadable_key_file_is_one_clear_error(tmp_path: Path, port: int) -> None:
    missing = tmp_path / "missing.pem"
    result = run_cli(
        "status",
        "--rest-url",
        f"http://127.0.0.1:{port}/trade-api/v2",
        KD_KALSHI__KEY_ID="abc",
        KD_KALSHI__PRIVATE_KEY_PATH=str(missing),
    )
    line = _one_error_line(result)
    assert "cannot read private key file" in line and str(missing) in line


def test_garbage_key_file_is_one_clear_error(tmp_path: Path, port: int) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    result = run_cli(
        "status",
        "--rest-url",
        f"http://127.0.0.1:{port}/trade-api/v2",
        KD_KALSHI__KEY_ID="abc",
        KD_KALSHI__PRIVATE_KEY_PATH=str(garbage),
    )
    assert "is not an unencrypted PEM private key" in _one_error_line(result)


def test_401_is_one_clear_error_with_a_credentials_hint(rsa_keypair: KeyPair) -> None:
    def reject(request: Received) -> Reply:
        return Reply(401, {"code": "authentication_error", "message": "invalid signature"})

    with ScriptedHttpServer(reject) as server:
        result = run_cli(
            "status",
            "--rest-url",
            server.base_url,
            KD_KALSHI__KEY_ID=rsa_keypair.key_id,
            KD_KALSHI__PRIVATE_KEY_PATH=str(rsa_keypair.pkcs1_path),
        )
    line = _one_error_line(result)
    assert "HTTP 401" in line and "invalid signature" in line
    assert "kalshi.key_id" in result.stderr
    assert len(server.received) == 1  # a 401 is never retried


def test_status_prints_exchange_state_and_cutoff_signed(rsa_keypair: KeyPair) -> None:
    with ScriptedHttpServer(_exchange) as server:
        result = run_cli(
            "status",
            "--rest-url",
            server.base_url,
            KD_KALSHI__KEY_ID=rsa_keypair.key_id,
            KD_KALSHI__PRIVATE_KEY_PATH=str(rsa_keypair.pkcs8_path),
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "exchange active:   yes" in out and "trading active:    no" in out
    assert "trades created before:  2025-11-02T00:00:00Z" in out
    assert rsa_keypair.key_id in out
    public = rsa_keypair.private_key.public_key()
    assert [r.path for r in server.received] == [
        "/trade-api/v2/exchange/status",
        "/trade-api/v2/historical/cutoff",
    ]
    for request in server.received:
        assert verify_kalshi_signature(public, request.headers, "GET", request.path)


def test_status_json_unsigned_via_settings_url() -> None:
    with ScriptedHttpServer(_exchange) as server:
        result = run_cli("status", "--json", KD_KALSHI__REST_URL=server.base_url)
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert out == {
        "rest_url": server.base_url,
        "signed": False,
        "exchange": STATUS,
        "historical_cutoff": CUTOFF,
    }
    assert "kalshi-access-signature" not in server.received[0].headers


def test_exchange_without_historical_partition_still_reports_status() -> None:
    def no_cutoff(request: Received) -> Reply:
        if request.path.endswith("/exchange/status"):
            return Reply(body=STATUS)
        return Reply(404, {"message": "not found"})

    with ScriptedHttpServer(no_cutoff) as server:
        result = run_cli("status", "--rest-url", server.base_url)
    assert result.returncode == 0, result.stderr
    assert "historical cutoff: not available" in result.stdout


def test_unusable_rest_url_is_one_clear_error() -> None:
    line = _one_error_line(run_cli("status", "--rest-url", "localhost:8000"))
    assert "invalid Kalshi REST URL 'localhost:8000'" in line
