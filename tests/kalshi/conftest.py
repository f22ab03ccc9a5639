"""Fixtures for the Kalshi client tests: scripted loopback servers and a no-wait REST client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from app.kalshi.auth import Signer
from app.kalshi.backoff import Backoff
from app.kalshi.rest import KalshiRest
from app.kalshi.session import RestSession
from tests.kalshi.peers import Handler, ScriptedHttpServer


@dataclass
class RecordingLimiter:
    """A `TokenLimiter` that grants everything at once and remembers what was asked."""

    reserved: list[float] = field(default_factory=list)
    wait_s: float = 0.0

    def reserve(self, tokens: float) -> float:
        self.reserved.append(tokens)
        return self.wait_s


@dataclass
class Harness:
    server: ScriptedHttpServer
    client: KalshiRest
    limiter: RecordingLimiter
    sleeps: list[float]


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def rest_harness() -> Iterator[HarnessFactory]:
    """`rest_harness(handler, max_retries=3, signer=None)` -> server + client that never sleeps.

    Backoff jitter is fixed at +10 % so tests can assert exact delays.
    """
    opened: list[Harness] = []

    def make(
        handler: Handler,
        *,
        max_retries: int = 3,
        signer: Signer | None = None,
        timeout_s: float = 5.0,
    ) -> Harness:
        server = ScriptedHttpServer(handler).__enter__()
        limiter = RecordingLimiter()
        sleeps: list[float] = []
        session = RestSession(
            server.base_url,
            signer=signer,
            limiter=limiter,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff=Backoff(0.5, 4.0, uniform01=lambda: 0.4),
            sleep=sleeps.append,
        )
        harness = Harness(server, KalshiRest(session), limiter, sleeps)
        opened.append(harness)
        return harness

    yield make
    for harness in opened:
        harness.client.close()
        harness.server.__exit__(None, None, None)
