"""Benchmarks for nlp-enrichment (run by `make bench`, never part of the default test run)."""
