"""One subscription (sid) of a WebSocket session: everything the listener keeps about it.

Its channel, its seq position, whether it was made with `use_yes_price` (stamped on each of
its frames for the normalizer) and, for the order book subscription, its gap recovery.
Thrown away with the sid (unsubscribe, a terminal error, the end of the session).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.listener.recovery import BookRecovery
from app.listener.sequence import SeqPosition

BOOK_CHANNEL = "orderbook_delta"


@dataclass
class Subscription:
    sid: int
    channel: str
    yes_price: bool = False
    position: SeqPosition = field(default_factory=SeqPosition)
    recovery: BookRecovery = field(default_factory=BookRecovery)  # used by book sids only

    @property
    def is_book(self) -> bool:
        return self.channel == BOOK_CHANNEL
