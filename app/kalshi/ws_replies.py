"""Typed command replies of the Kalshi WebSocket (kalshi-api.md §3.3).

```
{"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
{"id": 2, "type": "unsubscribed", "sid": 2, "seq": 7}
{"id": 3, "type": "ok", "sid": 456, "seq": 222, "msg": {"market_tickers": ["M-1", "M-2"]}}
{"id": 4, "type": "ok", "msg": [{"channel": "orderbook_delta", "sid": 1}]}
```

Parsing is tolerant where clients have seen variants (`market_tickers` at top level, `sid`
inside `msg`, `sids` lists) and strict where a wrong value would mislead the caller (a reply
without a sid for a subscription). Only command replies live here; what data frames mean is the
normalizers' business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.kalshi.errors import WireFormatError


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A new subscription: its channel and the sid its data frames will carry."""

    channel: str
    sid: int


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    sids: tuple[int, ...]
    seq: int | None


@dataclass(frozen=True, slots=True)
class UpdateOk:
    """Reply to `update_subscription`: the sid, its current seq and the full market list after
    the update (None when the server omitted it, e.g. with `skip_ticker_ack`)."""

    sid: int | None
    seq: int | None
    market_tickers: tuple[str, ...] | None
    market_ids: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One entry of `list_subscriptions`; `raw` keeps any extra fields the server adds."""

    channel: str
    sid: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _body(frame: Mapping[str, Any]) -> Mapping[str, Any]:
    body = frame.get("msg")
    return body if isinstance(body, Mapping) else {}


def _strings(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(item, str) for item in value)
    ):
        return tuple(value)
    raise WireFormatError(f"{what}: expected a list of strings, got {value!r}")


def parse_subscribed(frame: Mapping[str, Any]) -> Subscribed:
    body = _body(frame)
    channel = body.get("channel", frame.get("channel"))
    sid = _int(body.get("sid", frame.get("sid")))
    if not isinstance(channel, str) or sid is None:
        raise WireFormatError(f"subscribed reply without channel and sid: {dict(frame)!r}")
    return Subscribed(channel, sid)


def reply_sids(frame: Mapping[str, Any]) -> tuple[int, ...]:
    """Every sid a reply names, wherever it puts them (`sid`, `sids`, `msg.sid`, `msg.sids`)."""
    found: list[int] = []
    for source in (frame, _body(frame)):
        single = _int(source.get("sid"))
        if single is not None:
            found.append(single)
        many = source.get("sids")
        if isinstance(many, Sequence) and not isinstance(many, str):
            found.extend(sid for sid in (_int(item) for item in many) if sid is not None)
    return tuple(dict.fromkeys(found))


def parse_unsubscribed(frame: Mapping[str, Any]) -> Unsubscribed:
    return Unsubscribed(reply_sids(frame), _int(frame.get("seq", _body(frame).get("seq"))))


def parse_update_ok(frame: Mapping[str, Any]) -> UpdateOk:
    body = _body(frame)
    sids = reply_sids(frame)
    tickers = body.get("market_tickers", frame.get("market_tickers"))
    ids = body.get("market_ids", frame.get("market_ids"))
    return UpdateOk(
        sid=sids[0] if sids else None,
        seq=_int(frame.get("seq", body.get("seq"))),
        market_tickers=_strings(tickers, "ok.market_tickers"),
        market_ids=_strings(ids, "ok.market_ids"),
    )


def parse_subscription_list(frame: Mapping[str, Any]) -> list[SubscriptionInfo]:
    """The reply to `list_subscriptions`: `msg` is a list (or `msg.subscriptions` is)."""
    body = frame.get("msg")
    entries = body.get("subscriptions") if isinstance(body, Mapping) else body
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise WireFormatError(f"list_subscriptions reply: expected a list, got {body!r}")
    result: list[SubscriptionInfo] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise WireFormatError(f"list_subscriptions entry is not an object: {entry!r}")
        channel, sid = entry.get("channel"), _int(entry.get("sid"))
        if not isinstance(channel, str) or sid is None:
            raise WireFormatError(f"list_subscriptions entry without channel/sid: {entry!r}")
        result.append(SubscriptionInfo(channel, sid, entry))
    return result
