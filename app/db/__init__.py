"""Storage: the schema's code-side catalogue, connections, migrations and bulk writes.

- `app.db.tables`     table catalogue (partition columns, idempotency keys, retention defaults)
- `app.db.rows`       the NamedTuple rows normalizers produce and writers store
- `app.db.engine`     URLs, engines, psycopg2 connections, database creation
- `app.db.migrations` running the alembic revisions in `alembic/`
- `app.db.copy`       idempotent COPY-staging writes (`copy_rows`, `write_rows`)
- `app.db.partitions` native daily partitions: create ahead, retention, DEFAULT monitoring
- `app.db.timescale`  TimescaleDB detection and SQL (hypertables, compression, retention)

Storage receives rows, never raw Kalshi frames (STYLE §1); docs/schema.md is the reference.
"""
