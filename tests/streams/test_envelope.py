"""The envelope round-trips arbitrary bytes exactly and refuses anything corrupt."""

from __future__ import annotations

import random
import zlib

import pytest
import redis

from app.streams import EnvelopeError, Frame, decode_entry, encode_entry
from app.streams.envelope import (
    F_COUNT,
    F_DATA,
    F_VERSION,
    BatchBuilder,
    decode_frames,
    encode_frames,
)

NASTY = [
    b"",
    b"\xff\xfe\xfd",  # invalid UTF-8
    b'{"type": "trade", "msg": ',  # truncated JSON
    b"\x00" * 7,
    "é漢字🙂".encode(),
    b'{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"FED-23DEC-T3.00"}}',
    bytes(range(256)),
]


def random_frames(rng: random.Random, n: int) -> list[Frame]:
    frames = []
    for i in range(n):
        kind = rng.random()
        raw = rng.choice(NASTY) if kind < 0.3 else rng.randbytes(rng.randint(0, 600))
        frames.append(
            Frame(
                raw=raw,
                recv_ns=rng.randint(-(2**63), 2**63 - 1),
                conn_id=rng.choice(["g1-book-0-1a2b", "g1-trade-7", "", "conn-é"]),
                sid=rng.choice([None, 0, 1, 2**63 - 1, -5]),
                seq=rng.choice([None, 0, i, 2**62]),
                gap=rng.random() < 0.2,
                resync=rng.random() < 0.1,
            )
        )
    return frames


def test_round_trip_arbitrary_bytes_is_exact() -> None:
    rng = random.Random(20261124)
    for n in (0, 1, 2, 17, 500):
        frames = random_frames(rng, n)
        assert decode_entry(encode_entry(frames)) == frames


def test_round_trip_large_frames() -> None:
    big = Frame(random.Random(1).randbytes(5 * 1024 * 1024), 1, "c")
    frames = [big, Frame(b"", 2, "c"), big._replace(recv_ns=3)]
    decoded = decode_entry(encode_entry(frames))
    assert decoded == frames
    assert decoded[0].raw == big.raw


def test_round_trip_through_real_redis(client: redis.Redis, names) -> None:
    frames = random_frames(random.Random(7), 300)
    stream = names.trade
    entry_id = client.xadd(stream, encode_entry(frames))
    ((_, fields),) = client.xrange(stream, entry_id, entry_id)
    assert decode_entry(fields) == frames


def test_verdict_fields_are_kept() -> None:
    frame = Frame(b"x", 123, "c", sid=None, seq=9, gap=True)
    (back,) = decode_entry(encode_entry([frame]))
    assert (back.sid, back.seq, back.gap, back.recv_ns, back.conn_id) == (None, 9, True, 123, "c")
    assert not back.resync
    (resync,) = decode_entry(encode_entry([frame._replace(gap=False, resync=True)]))
    assert (resync.gap, resync.resync) == (False, True)
    (flagged,) = decode_entry(
        encode_entry([frame._replace(gap=False, repeat=True, yes_price=True)])
    )
    assert (flagged.gap, flagged.resync, flagged.repeat, flagged.yes_price) == (
        False,
        False,
        True,
        True,
    )
    assert not back.yes_price


def test_undefined_flag_bits_are_refused() -> None:
    count, data = encode_frames([Frame(b"x", 1, "c", sid=1, seq=1)])
    # the flags byte sits after crc, the connection table (u16 + u16 + "c") and three i64s
    at = 4 + 2 + 2 + 1 + 24
    assert data[at] == 3  # sid and seq present
    body = bytearray(data)
    body[at] |= 64
    body[:4] = zlib.crc32(bytes(body[4:])).to_bytes(4, "little")
    with pytest.raises(EnvelopeError, match="unknown frame flags"):
        decode_frames(bytes(body), count)


def test_invalid_frames_are_refused_and_leave_the_batch_intact() -> None:
    builder = BatchBuilder()
    builder.add(Frame(b"ok", 1, "c"))
    with pytest.raises(TypeError):
        builder.add(Frame("text, not bytes", 1, "c"))
    with pytest.raises(ValueError):
        builder.add(Frame(b"x", 1, "new-conn", sid=2**64))
    with pytest.raises(ValueError):
        builder.add(Frame(b"x", 1, "\ud800"))  # lone surrogate cannot be UTF-8
    builder.add(Frame(b"ok2", 2, "c2"))
    assert [f.raw for f in decode_frames(builder.finish(), 2)] == [b"ok", b"ok2"]


def entry() -> dict[bytes, bytes]:
    return encode_entry([Frame(b'{"a":1}', 5, "c", 1, 2), Frame(b"\xff", 6, "d")])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.pop(F_DATA), "missing field"),
        (lambda f: f.pop(F_VERSION), "missing field"),
        (lambda f: f.__setitem__(F_VERSION, b"2"), "unsupported schema version"),
        (lambda f: f.__setitem__(F_COUNT, b"three"), "not an integer"),
        (lambda f: f.__setitem__(F_COUNT, b"3"), "entry says 3 frames"),
        (lambda f: f.__setitem__(F_DATA, f[F_DATA][:-1]), "checksum"),
        (lambda f: f.__setitem__(F_DATA, f[F_DATA][:3]), "too short"),
        (lambda f: f.__setitem__(F_DATA, f[F_DATA] + b"\x00"), "checksum"),
        (lambda f: f.__setitem__(F_DATA, f[F_DATA].decode("latin-1")), "not bytes"),
    ],
)
def test_corrupt_entries_raise_envelope_error(mutate, message: str) -> None:
    fields = entry()
    mutate(fields)
    with pytest.raises(EnvelopeError, match=message):
        decode_entry(fields)


def test_every_flipped_byte_is_detected() -> None:
    data = entry()[F_DATA]
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x41
        with pytest.raises(EnvelopeError):
            decode_frames(bytes(corrupt), 2)


def test_random_garbage_never_raises_anything_but_envelope_error() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        blob = rng.randbytes(rng.randint(0, 80))
        with pytest.raises(EnvelopeError):
            decode_entry({b"v": b"1", b"n": b"1", b"d": blob})
