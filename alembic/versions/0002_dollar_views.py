"""Human-readable views: prices in decimal dollars, quantities in contracts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

The tables store integers (micro-dollars, hundredths of a contract); these views divide them
exactly as `numeric` (never float) for people and notebooks. Time columns pass through.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _dollars(column: str, alias: str | None = None) -> str:
    return f"({column}::numeric / 1000000)::numeric(18, 6) AS {alias or column + '_dollars'}"


def _contracts(column: str, alias: str | None = None) -> str:
    return f"({column}::numeric / 100)::numeric(20, 2) AS {alias or column + '_contracts'}"


def _dollar_array(column: str) -> str:
    return (
        f"ARRAY(SELECT (p::numeric / 1000000)::numeric(18, 6) "
        f"FROM unnest({column}) WITH ORDINALITY AS u(p, i) ORDER BY i) AS {column}_dollars"
    )


def _contract_array(column: str) -> str:
    return (
        f"ARRAY(SELECT (s::numeric / 100)::numeric(20, 2) "
        f"FROM unnest({column}) WITH ORDINALITY AS u(s, i) ORDER BY i) AS {column}_contracts"
    )


VIEWS: dict[str, str] = {
    "trades_dollars": f"""
SELECT trade_id,
       market_ticker,
       CASE WHEN exchange_ms IS NULL THEN exchange_ts
            ELSE exchange_ts + mod(exchange_ms, 1000) * INTERVAL '1 millisecond'
       END AS exchange_time,
       {_dollars("yes_price")},
       {_dollars("no_price")},
       {_contracts("size")},
       taker_side,
       taker_book_side,
       is_block_trade,
       source,
       gatherer,
       received_at
FROM trades""",
    "orderbook_deltas_dollars": f"""
SELECT market_ticker,
       received_at,
       exchange_ts,
       side,
       {_dollars("price")},
       {_contracts("delta")},
       gatherer,
       connection_id,
       sid,
       seq
FROM orderbook_deltas""",
    "orderbook_snapshots_dollars": f"""
SELECT market_ticker,
       received_at,
       source,
       {_dollar_array("yes_prices")},
       {_contract_array("yes_sizes")},
       {_dollar_array("no_prices")},
       {_contract_array("no_sizes")},
       {_dollars("best_yes_bid")},
       {_dollars("best_no_bid")},
       gatherer,
       connection_id,
       sid,
       seq
FROM orderbook_snapshots""",
    "orderbook_snapshot_levels": f"""
SELECT s.market_ticker,
       s.received_at,
       s.source,
       s.gatherer,
       s.connection_id,
       s.sid,
       s.seq,
       l.side,
       l.price,
       l.size,
       {_dollars("l.price", "price_dollars")},
       {_contracts("l.size", "size_contracts")}
FROM orderbook_snapshots s
CROSS JOIN LATERAL (
    SELECT 'yes'::text AS side, y.price, y.size
    FROM unnest(s.yes_prices, s.yes_sizes) AS y(price, size)
    UNION ALL
    SELECT 'no'::text, n.price, n.size
    FROM unnest(s.no_prices, s.no_sizes) AS n(price, size)
) AS l""",
    "tickers_dollars": f"""
SELECT market_ticker,
       exchange_ts,
       received_at,
       {_dollars("price")},
       {_dollars("yes_bid")},
       {_dollars("yes_ask")},
       {_contracts("yes_bid_size")},
       {_contracts("yes_ask_size")},
       {_contracts("last_trade_size")},
       {_contracts("volume")},
       {_contracts("open_interest")},
       dollar_volume,
       dollar_open_interest,
       gatherer
FROM tickers""",
}


def upgrade() -> None:
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
        op.execute(f"COMMENT ON VIEW {name} IS 'Decimal dollars and contracts (see schema.md)'")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
