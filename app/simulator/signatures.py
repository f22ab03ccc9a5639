"""Checking the KALSHI-ACCESS-* signature of a REST request or WebSocket upgrade (§2).

Verification itself is `app.kalshi.auth.verify_signature`, the same rules our client signs
with. The simulator accepts any key id as long as the signature verifies against the one public
key it was given, and a timestamp within `max_skew_s` of its clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import Enum

from cryptography.hazmat.primitives.asymmetric import rsa

from app.kalshi.auth import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, verify_signature


class Signature(Enum):
    ABSENT = "absent"
    VALID = "valid"
    INVALID = "invalid"


class SignatureChecker:
    def __init__(self, public_key: rsa.RSAPublicKey | None, max_skew_s: float = 300.0) -> None:
        self.public_key = public_key
        self.max_skew_ms = max_skew_s * 1000

    @property
    def enabled(self) -> bool:
        return self.public_key is not None

    def check(self, headers: Mapping[str, str], method: str, path: str) -> tuple[Signature, str]:
        """The verdict and, when invalid, a short reason."""
        key_id = headers.get(HEADER_KEY)
        timestamp = headers.get(HEADER_TIMESTAMP)
        signature = headers.get(HEADER_SIGNATURE)
        if key_id is None and timestamp is None and signature is None:
            return Signature.ABSENT, "no signature headers"
        if self.public_key is None:
            return Signature.VALID, ""
        if not key_id or not timestamp or not signature:
            return Signature.INVALID, "incomplete KALSHI-ACCESS-* headers"
        if not timestamp.isdigit():
            return Signature.INVALID, "KALSHI-ACCESS-TIMESTAMP is not Unix milliseconds"
        if abs(time.time() * 1000 - int(timestamp)) > self.max_skew_ms:
            return Signature.INVALID, "KALSHI-ACCESS-TIMESTAMP is too far from the server clock"
        if not verify_signature(self.public_key, signature, timestamp, method, path):
            return Signature.INVALID, "signature does not verify"
        return Signature.VALID, ""
