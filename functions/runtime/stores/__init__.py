"""Stores: one per concern, one method per named query of ``sql/queries/<concern>.sql``, over the
connector of :mod:`functions.runtime.db` (a pool plus what we know of its server's health).

Services and the group-commit loop depend on the store protocols only; :mod:`functions.runtime.stores.
memory` implements the same protocols on Python dicts for unit tests (as procrastinate's in-memory
connector does), and the PostgreSQL stores are tested against real servers in tests/integration.
"""
