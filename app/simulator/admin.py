"""Admin HTTP API under `/admin` (not part of Kalshi's protocol; never rate limited or signed).

`GET /admin/state` describes the run, `POST /admin/faults` injects faults, `POST /admin/dump`
flushes the truth and writes `state.jsonl`. Meant for tests and demos on loopback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from app.simulator.faults import FaultError
from app.simulator.rest import error_response, json_response

if TYPE_CHECKING:
    from app.simulator.server import Simulator


class AdminApi:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/state", self.state),
            web.post("/admin/faults", self.faults),
            web.post("/admin/dump", self.dump),
        ]

    async def state(self, request: web.Request) -> web.Response:
        return json_response(self.simulator.describe())

    async def faults(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, "bad_request", "body must be JSON")
        requests: list[Any] = body if isinstance(body, list) else [body]
        if not requests or not all(isinstance(r, dict) for r in requests):
            return error_response(400, "bad_request", "body must be a fault object or a list")
        results = []
        try:
            for fault in requests:
                results.append(self.simulator.faults.apply(fault))
        except FaultError as exc:
            return error_response(400, "bad_request", str(exc))
        self.simulator.hub.flush_all()
        return json_response({"applied": results})

    async def dump(self, request: web.Request) -> web.Response:
        path = self.simulator.dump_state("admin")
        return json_response(
            {"state_file": str(path) if path else None, "step": self.simulator.exchange.step_no}
        )
