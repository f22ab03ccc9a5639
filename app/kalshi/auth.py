"""Kalshi request signing (kalshi-api.md §2, SEED KAPI-2).

Signature = base64(RSA-PSS(SHA-256, MGF1-SHA-256, salt = digest length)) over
`timestamp_ms + METHOD + path`, where path starts at the host root and never includes the query
string. The simulator uses `verify_signature` with the same rules so both sides agree by
construction, and our tests check the client against an independent verifier.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.config import KalshiSettings
from app.kalshi.errors import KeyLoadError

HEADER_KEY = "KALSHI-ACCESS-KEY"
HEADER_TIMESTAMP = "KALSHI-ACCESS-TIMESTAMP"
HEADER_SIGNATURE = "KALSHI-ACCESS-SIGNATURE"
WS_PATH = "/trade-api/ws/v2"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _read_pem(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_private_key(path: Path | str) -> rsa.RSAPrivateKey:
    """Load an RSA private key from a PEM file (PKCS#1 or PKCS#8, unencrypted)."""
    data = _read_pem(path, "private key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyLoadError(f"{path} holds a {type(key).__name__}, Kalshi keys are RSA")
    return key


def load_public_key(path: Path | str) -> rsa.RSAPublicKey:
    """Load an RSA public key from a PEM file (SubjectPublicKeyInfo or PKCS#1)."""
    data = _read_pem(path, "public key file")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError(f"{path} holds a {type(key).__name__}, Kalshi keys are RSA")
    return key


def signing_message(timestamp_ms: int | str, method: str, path: str) -> bytes:
    """The exact bytes Kalshi signs: timestamp, upper-case method, path without query string."""
    bare_path = urlsplit(path).path if "?" in path or "://" in path else path
    return f"{timestamp_ms}{method.upper()}{bare_path}".encode()


def sign(private_key: rsa.RSAPrivateKey, timestamp_ms: int | str, method: str, path: str) -> str:
    """Base64 RSA-PSS signature of one request."""
    signature = private_key.sign(signing_message(timestamp_ms, method, path), _PSS, hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify_signature(
    public_key: rsa.RSAPublicKey,
    signature_b64: str,
    timestamp_ms: int | str,
    method: str,
    path: str,
) -> bool:
    """True when `signature_b64` is a valid signature of this request."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(
            signature, signing_message(timestamp_ms, method, path), _PSS, hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def auth_headers(
    key_id: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    path: str,
    now_ms: int | None = None,
) -> dict[str, str]:
    """The three KALSHI-ACCESS-* headers for one request (REST call or WebSocket upgrade)."""
    timestamp_ms = _now_ms() if now_ms is None else now_ms
    return {
        HEADER_KEY: key_id,
        HEADER_TIMESTAMP: str(timestamp_ms),
        HEADER_SIGNATURE: sign(private_key, timestamp_ms, method, path),
    }


@dataclass(frozen=True)
class Signer:
    """A key id plus its private key: signs every REST request and WebSocket upgrade afresh.

    Signing per request (never caching headers) matters because the timestamp is part of the
    signed string; retries and reconnects must carry a new one.
    """

    key_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    clock_ms: Callable[[], int] = field(default=_now_ms, repr=False, compare=False)

    @classmethod
    def from_key_file(cls, key_id: str, private_key_path: Path | str) -> Signer:
        return cls(key_id, load_private_key(private_key_path))

    def headers(self, method: str, path: str) -> dict[str, str]:
        """KALSHI-ACCESS-* headers for `method path` (any query string is ignored)."""
        return auth_headers(self.key_id, self.private_key, method, path, now_ms=self.clock_ms())


def signer_from_settings(settings: KalshiSettings) -> Signer | None:
    """The signer for the configured key, or None when no credentials are configured.

    Half a configuration (a key id without a key file or the reverse) is refused rather than
    silently sending unsigned requests.
    """
    if settings.key_id and settings.private_key_path:
        return Signer.from_key_file(settings.key_id, settings.private_key_path)
    if settings.key_id:
        raise KeyLoadError("kalshi.key_id is set but kalshi.private_key_path is not")
    if settings.private_key_path:
        raise KeyLoadError("kalshi.private_key_path is set but kalshi.key_id is not")
    return None
