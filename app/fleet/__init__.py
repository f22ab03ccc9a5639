"""Running kalshi-data processes together on one machine: supervision and the live status line."""
