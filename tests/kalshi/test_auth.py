"""Request signing (kalshi-api.md §2) checked against an independent verifier."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.config import KalshiSettings
from app.kalshi.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    Signer,
    auth_headers,
    load_private_key,
    load_public_key,
    signer_from_settings,
    signing_message,
    verify_signature,
)
from app.kalshi.errors import KeyLoadError
from tests.conftest import KeyPair
from tests.kalshi.peers import verify_kalshi_signature


def test_signature_verifies_with_cryptography_directly(rsa_keypair: KeyPair) -> None:
    key = load_private_key(rsa_keypair.pkcs8_path)
    headers = auth_headers(rsa_keypair.key_id, key, "get", "/trade-api/v2/markets", 1703123456789)
    assert headers[HEADER_KEY] == rsa_keypair.key_id
    assert headers[HEADER_TIMESTAMP] == "1703123456789"
    public = rsa_keypair.private_key.public_key()
    assert verify_kalshi_signature(public, headers, "GET", "/trade-api/v2/markets")
    # Any other method, path or timestamp must fail: the verifier is not vacuous.
    assert not verify_kalshi_signature(public, headers, "POST", "/trade-api/v2/markets")
    assert not verify_kalshi_signature(public, headers, "GET", "/trade-api/v2/events")
    tampered = {**headers, HEADER_TIMESTAMP: "1703123456790"}
    assert not verify_kalshi_signature(public, tampered, "GET", "/trade-api/v2/markets")


def test_signed_string_excludes_the_query(rsa_keypair: KeyPair) -> None:
    key = load_private_key(rsa_keypair.pkcs8_path)
    path = "/trade-api/v2/portfolio/orders"
    headers = auth_headers("k", key, "GET", path + "?limit=5&cursor=abc", 1703123456789)
    public = rsa_keypair.private_key.public_key()
    assert verify_kalshi_signature(public, headers, "GET", path)
    assert not verify_kalshi_signature(public, headers, "GET", path + "?limit=5&cursor=abc")
    assert signing_message(1703123456789, "GET", path + "?limit=5") == (
        b"1703123456789GET/trade-api/v2/portfolio/orders"
    )
    full_url = "https://external-api.kalshi.com/trade-api/v2/markets?status=open"
    assert signing_message(1, "get", full_url) == b"1GET/trade-api/v2/markets"


def test_websocket_message_is_get_ws_path(rsa_keypair: KeyPair) -> None:
    signer = Signer.from_key_file("k", rsa_keypair.pkcs1_path)
    signer = Signer(signer.key_id, signer.private_key, clock_ms=lambda: 1700000000000)
    headers = signer.headers("GET", "/trade-api/ws/v2")
    assert headers[HEADER_TIMESTAMP] == "1700000000000"
    public = rsa_keypair.private_key.public_key()
    assert verify_kalshi_signature(public, headers, "GET", "/trade-api/ws/v2")


@pytest.mark.parametrize("which", ["pkcs1_path", "pkcs8_path"])
def test_pkcs1_and_pkcs8_keys_both_load_and_sign(rsa_keypair: KeyPair, which: str) -> None:
    path: Path = getattr(rsa_keypair, which)
    first_line = path.read_text().splitlines()[0]
    assert ("RSA PRIVATE KEY" in first_line) == (which == "pkcs1_path")
    key = load_private_key(path)
    assert key.private_numbers() == rsa_keypair.private_key.private_numbers()
    headers = auth_headers("k", key, "GET", "/trade-api/v2/exchange/status")
    assert verify_kalshi_signature(
        rsa_keypair.private_key.public_key(), headers, "GET", "/trade-api/v2/exchange/status"
    )


def test_pss_signatures_are_randomised_and_our_verifier_agrees(rsa_keypair: KeyPair) -> None:
    key = load_private_key(rsa_keypair.pkcs8_path)
    first = auth_headers("k", key, "GET", "/p", 5)[HEADER_SIGNATURE]
    second = auth_headers("k", key, "GET", "/p", 5)[HEADER_SIGNATURE]
    assert first != second  # PSS uses a random salt
    assert len(base64.b64decode(first)) == 256  # 2048-bit key
    public = load_public_key(rsa_keypair.public_path)
    assert verify_signature(public, first, 5, "GET", "/p")
    assert not verify_signature(public, first, 6, "GET", "/p")
    assert not verify_signature(public, "not base64!", 5, "GET", "/p")


def test_signer_uses_a_fresh_timestamp_each_time(rsa_keypair: KeyPair) -> None:
    ticks = iter([1000, 2000])
    signer = Signer("k", load_private_key(rsa_keypair.pkcs8_path), clock_ms=lambda: next(ticks))
    assert signer.headers("GET", "/a")[HEADER_TIMESTAMP] == "1000"
    assert signer.headers("GET", "/a")[HEADER_TIMESTAMP] == "2000"
    assert "private_key" not in repr(signer)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(KeyLoadError, match=r"cannot read private key file .*nope\.pem"):
        load_private_key(missing)


def test_directory_instead_of_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="cannot read private key file"):
        load_private_key(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, I am not a key\n",
        # A PEM envelope around garbage ("foo"), assembled here so no key-shaped block sits
        # in the repository.
        b"-----BEGIN " + b"PRIVATE KEY-----\nZm9v\n-----END " + b"PRIVATE KEY-----\n",
    ],
)
def test_garbage_key_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pem"
    path.write_bytes(content)
    with pytest.raises(KeyLoadError, match=r"garbage\.pem is not an unencrypted PEM private key"):
        load_private_key(path)


def test_encrypted_key_is_refused(tmp_path: Path, rsa_keypair: KeyPair) -> None:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        rsa_keypair.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(KeyLoadError, match="not an unencrypted PEM private key"):
        load_private_key(path)


def test_non_rsa_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyLoadError, match="Kalshi keys are RSA"):
        load_private_key(path)


def test_signer_from_settings(rsa_keypair: KeyPair, tmp_path: Path) -> None:
    assert signer_from_settings(KalshiSettings()) is None
    signer = signer_from_settings(
        KalshiSettings(key_id="abc", private_key_path=rsa_keypair.pkcs1_path)
    )
    assert signer is not None and signer.key_id == "abc"
    with pytest.raises(KeyLoadError, match="private_key_path is not"):
        signer_from_settings(KalshiSettings(key_id="abc"))
    with pytest.raises(KeyLoadError, match="key_id is not"):
        signer_from_settings(KalshiSettings(private_key_path=rsa_keypair.pkcs1_path))
    with pytest.raises(KeyLoadError, match="cannot read"):
        signer_from_settings(KalshiSettings(key_id="abc", private_key_path=tmp_path / "x.pem"))
