"""Small real servers the Kalshi client tests talk to over loopback sockets.

`ScriptedHttpServer` answers each request with whatever the test's handler function returns and
records what it received (path, query, headers) so tests can assert signing, paging and retries
on the wire. It is a legitimate peer for retry logic; protocol fidelity is the simulator's job.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = [value for key, value in self.query if key == name]
        return values[0] if values else None

    def params(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay_s: float = 0.0


Handler = Callable[[Received], Reply]


class ScriptedHttpServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose answers come from `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[Received] = []
        owner = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Received(
                    "GET",
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    {key.lower(): value for key, value in self.headers.items()},
                )
                owner.received.append(request)
                reply = owner.handler(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if isinstance(reply.body, bytes):
                    payload = reply.body
                elif isinstance(reply.body, str):
                    payload = reply.body.encode()
                else:
                    payload = orjson.dumps(reply.body)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/trade-api/v2"

    def __enter__(self) -> ScriptedHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def verify_kalshi_signature(
    public_key: rsa.RSAPublicKey, headers: dict[str, str], method: str, path: str
) -> bool:
    """An independent check of kalshi-api.md §2, written with `cryptography` directly.

    Deliberately does not use `app.kalshi.auth`: salt length 32 is spelled out, and the
    message is built here from the documented rule `timestamp + METHOD + path`.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        timestamp = lowered["kalshi-access-timestamp"]
        signature = base64.b64decode(lowered["kalshi-access-signature"], validate=True)
    except (KeyError, ValueError):
        return False
    message = f"{timestamp}{method}{path}".encode()
    try:
        public_key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    except InvalidSignature:
        return False
    return True
