"""Alembic environment for kalshi-data: one schema for gatherer and production databases.

The database URL comes from `config.attributes["database_url"]` when `app.db.migrations` runs
us (the normal path); by hand from `-x url=...`, else the kalshi-data settings (KD_* environment,
plus the YAML file given as `-x config=path`).
Migrations are raw SQL (design-facts §3: autogenerate understands neither hypertables nor
partitions), so there is no target metadata. Each revision runs in its own transaction.
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy.pool import NullPool

from alembic import context
from app.config import load_settings
from app.db.engine import create_db_engine, describe_url, sqlalchemy_url

config = context.config

if config.config_file_name is not None and not config.attributes.get("embedded"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    """Explicit URL first; by hand, `-x url=...` or the settings (`-x config=file.yaml`)."""
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    extra = context.get_x_argument(as_dictionary=True)
    if extra.get("url"):
        return extra["url"]
    return load_settings(extra.get("config")).database_url


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=sqlalchemy_url(_database_url()).render_as_string(hide_password=True),
        literal_binds=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    engine = create_db_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
    config.attributes["migrated_database"] = describe_url(url)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
