"""Order book test fixtures: migrated databases cloned from the session template (tests/db),
and the simulator process fixture (tests/simulator)."""

from __future__ import annotations

from tests.db.conftest import migrated_database, migrated_template
from tests.simulator.conftest import sim_factory

__all__ = ["migrated_database", "migrated_template", "sim_factory"]
