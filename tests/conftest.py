"""Fixtures shared by every test folder live in tests/fixtures/ (one plugin per kind of state)."""

pytest_plugins = ["tests.fixtures.pg", "tests.fixtures.servers", "tests.fixtures.queue"]
