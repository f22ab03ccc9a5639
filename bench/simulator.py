"""Benchmark of the exchange simulator: scale (1M markets) and WebSocket frame throughput.

Usage:
    .venv/bin/python bench/simulator.py                 # both parts, default sizes
    .venv/bin/python bench/simulator.py scale --markets 1000000
    .venv/bin/python bench/simulator.py frames --seconds 10 --connections 1

`scale` starts `kalshi-data sim --markets N` as a real process and reports the time until it
listens, its RSS, the time to page through every market with `GET /markets?limit=1000`, and RSS
afterwards. `frames` starts a simulator with a very high `--rate`, connects raw-socket WebSocket
clients (a minimal RFC 6455 reader, so the client is not the bottleneck), subscribes each to
`orderbook_delta` for every market plus `ticker` and `trade` for all markets, and reports the
frames per second received while truth recording is on. Results are printed as plain lines.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def start_simulator(args: list[str]) -> tuple[subprocess.Popen[str], int, float]:
    """Start `kalshi-data sim` on a free port; returns (process, port, seconds to listen)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "app", "--log-level", "WARNING", "sim", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("simulator listening on "):
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    port = urlsplit(line.split()[-1]).port
    assert port is not None
    return process, port, time.perf_counter() - started


def stop_simulator(process: subprocess.Popen[str]) -> float:
    """SIGTERM and wait; returns seconds the clean shutdown (truth flush) took."""
    started = time.perf_counter()
    process.terminate()
    process.wait(timeout=600)
    return time.perf_counter() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get_json(conn: http.client.HTTPConnection, path: str) -> dict:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path} -> {response.status}: {body[:200]!r}")
    return json.loads(body)


def all_tickers(conn: http.client.HTTPConnection) -> list[str]:
    tickers: list[str] = []
    cursor = ""
    while True:
        path = "/trade-api/v2/markets?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        body = get_json(conn, path)
        tickers += [m["ticker"] for m in body["markets"]]
        cursor = body["cursor"]
        if not cursor:
            return tickers


def bench_scale(markets: int, rate: float) -> None:
    process, port, startup = start_simulator(
        ["--markets", str(markets), "--rate", str(rate), "--seed", "7"]
    )
    try:
        print(f"scale.markets {markets}")
        print(f"scale.startup_s {startup:.2f}")
        print(f"scale.rss_after_start_mib {rss_mib(process.pid):.0f}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        started = time.perf_counter()
        seen, pages, cursor = 0, 0, ""
        while True:
            path = "/trade-api/v2/markets?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            body = get_json(conn, path)
            seen += len(body["markets"])
            pages += 1
            cursor = body["cursor"]
            if not cursor:
                break
        elapsed = time.perf_counter() - started
        print(f"scale.paginated_markets {seen} (markets exist now, new ones keep being created)")
        print(f"scale.pages {pages}")
        print(f"scale.pagination_s {elapsed:.1f}")
        print(f"scale.markets_per_s {seen / elapsed:.0f}")
        print(f"scale.rss_after_pagination_mib {rss_mib(process.pid):.0f}")
        state = get_json(conn, "/admin/state")
        print(f"scale.events_generated {state['step']}")
    finally:
        print(f"scale.shutdown_s {stop_simulator(process):.1f}")


class RawWebSocket:
    """Just enough RFC 6455 client to subscribe and count frames as fast as Python allows."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /trade-api/ws/v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, self.rest = data.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise SystemExit(f"upgrade refused: {head[:100]!r}")

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        length = len(payload)
        if length < 126:
            header = struct.pack(">BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack(">BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack(">BBQ", 0x81, 0x80 | 127, length)
        self.sock.sendall(header + mask + masked)

    def count_frames(self, seconds: float) -> tuple[int, int]:
        """(text frames, bytes) received during `seconds`."""
        buffer = bytearray(self.rest)
        frames = 0
        received = 0
        deadline = time.perf_counter() + seconds
        chunk = bytearray(4 << 20)
        view = memoryview(chunk)
        while time.perf_counter() < deadline:
            n = self.sock.recv_into(view)
            if n == 0:
                break
            received += n
            buffer += view[:n]
            pos = 0
            end = len(buffer)
            while end - pos >= 2:
                length = buffer[pos + 1] & 0x7F
                start = pos + 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                    start = pos + 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                    start = pos + 10
                if end < start + length:
                    break
                if buffer[pos] == 0x81:
                    frames += 1
                pos = start + length
            del buffer[:pos]
        self.rest = bytes(buffer)
        return frames, received


def _client(port: int, tickers: list[str], seconds: float, queue: multiprocessing.Queue) -> None:
    ws = RawWebSocket(port)
    ws.send_text(
        json.dumps(
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": tickers},
            }
        )
    )
    ws.send_text(json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["ticker"]}}))
    ws.send_text(json.dumps({"id": 3, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
    ws.count_frames(1.0)  # warm-up: snapshots and the first second
    queue.put(ws.count_frames(seconds))


def bench_frames(markets: int, rate: float, seconds: float, connections: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sim-bench-truth-") as truth:
        process, port, _ = start_simulator(
            [
                "--markets", str(markets), "--rate", str(rate), "--seed", "7",
                "--market-lifetime", "100000", "--truth", truth,
            ]
        )  # fmt: skip
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            tickers = all_tickers(conn)
            before = get_json(conn, "/admin/state")
            queue: multiprocessing.Queue = multiprocessing.Queue()
            clients = [
                multiprocessing.Process(target=_client, args=(port, tickers, seconds, queue))
                for _ in range(connections)
            ]
            for client in clients:
                client.start()
            results = [queue.get(timeout=seconds + 60) for _ in clients]
            after = get_json(conn, "/admin/state")
            for client in clients:
                client.join()
            frames = sum(r[0] for r in results)
            received = sum(r[1] for r in results)
            events = after["step"] - before["step"]
            print(f"frames.markets {markets}")
            print(f"frames.requested_rate {rate:.0f} events/s")
            print(f"frames.connections {connections}")
            print(f"frames.seconds {seconds}")
            print(f"frames.frames_per_s {frames / seconds:.0f}")
            print(f"frames.mib_per_s {received / seconds / (1 << 20):.1f}")
            print(f"frames.exchange_events_per_s {events / (seconds + 1):.0f} (incl. 1 s warm-up)")
        finally:
            print(f"frames.shutdown_s {stop_simulator(process):.1f}")
            size = sum(f.stat().st_size for f in Path(truth).iterdir())
            print(f"frames.truth_mib {size / (1 << 20):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", choices=["scale", "frames", "all"], default="all")
    parser.add_argument("--markets", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    if args.part in ("scale", "all"):
        bench_scale(args.markets or 1_000_000, args.rate or 200.0)
    if args.part in ("frames", "all"):
        bench_frames(args.markets or 1000, args.rate or 200_000.0, args.seconds, args.connections)


if __name__ == "__main__":
    main()
