"""Planner statistics on PostgreSQL: ANALYZE the resource and index tables as they grow.

Search SQL nests ``IN (SELECT ...)`` subqueries (chains, ``_has``); without statistics the planner
takes every table for one row and runs them as nested loops, which on a freshly loaded database turns a
20 ms chain into minutes. Autovacuum normally keeps statistics fresh, but many installations (and this
project's CI) run without it, so the server does what autovacuum's analyze would: after writes that
grew the data by ``fraction`` (at least ``minimum`` resources) since the last ANALYZE, it runs one, on a
thread of its own so that the write that made it due is answered without waiting for it. ANALYZE samples
a fixed number of rows, so it costs well under a second even on millions of rows, and it blocks neither
reads nor writes. SQLite plans without statistics well enough and is left alone.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, text

from fhir_server.storage.engine import is_sqlite
from fhir_server.storage.schema import INDEX_TABLES, resource

log = logging.getLogger(__name__)

TABLES = (resource.name, *(t.name for t in INDEX_TABLES.values()))


class PlannerStatistics:
    """Counts the resources written in this process and runs ANALYZE when they are due."""

    def __init__(self, engine: Engine, minimum: int = 20, fraction: float = 0.1) -> None:
        self.engine = engine
        self.minimum = minimum
        self.fraction = fraction
        self.enabled = not is_sqlite(engine)
        self._pending = 0
        self._rows = 0
        self._counting = threading.Lock()
        self._analyzing = threading.Lock()

    def written(self, count: int) -> None:
        """Note ``count`` committed resource writes; start an ANALYZE when enough have accumulated."""
        if not self.enabled or count <= 0:
            return
        with self._counting:
            self._pending += count
            due = self._pending >= max(self.minimum, self.fraction * self._rows)
        if due and self._analyzing.acquire(blocking=False):  # one ANALYZE at a time
            threading.Thread(target=self._analyze_in_background, name="analyze", daemon=True).start()

    def _analyze_in_background(self) -> None:
        try:
            self.analyze()
        except Exception:  # a failed ANALYZE only leaves older statistics; the next due one tries again
            log.exception("ANALYZE of the resource tables failed")
        finally:
            self._analyzing.release()

    def analyze(self) -> None:
        """ANALYZE the resource and index tables now."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"ANALYZE {', '.join(TABLES)}"))
            rows = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'resource'::regclass")).scalar_one()
        with self._counting:
            self._pending = 0
            self._rows = max(int(rows), 0)
        log.debug("analyzed %s (%d resources)", ", ".join(TABLES), self._rows)
