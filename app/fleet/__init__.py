"""Running kalshi-data processes together on one machine (`kalshi-data up`): one gatherer or N
and the deduplicator, supervision and the live status line."""
