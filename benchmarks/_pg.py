"""The throwaway PostgreSQL cluster of the service benchmarks: :mod:`campaignrl.service.pgcluster`.

Kept as a name the benchmarks import (``from _pg import throwaway_postgres``); the one copy
of the recipe, shared with the tests, is in the package.
"""

from __future__ import annotations

from campaignrl.service.pgcluster import postgres_bindir, throwaway_postgres

__all__ = ["postgres_bindir", "throwaway_postgres"]
