"""kalshi-data: complete, deduplicated, queryable capture of Kalshi market data.

`app` is the library. It never imports `workers` or `tasks`; those are thin process and task
wrappers around functions defined here.
"""

__version__ = "0.1.0"
