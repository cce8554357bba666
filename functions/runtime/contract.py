"""The python3-http handler contract (event / context), as the official OpenFaaS template gives it.

``event.body`` is bytes, ``event.headers`` a case-insensitive mapping with ``.get``, ``event.method`` a
str, ``event.query`` a multi-dict with ``.get`` (first value) and ``.getlist``, ``event.path`` a str;
``context.hostname`` is ``$HOSTNAME`` or ``localhost``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping (like werkzeug's EnvironHeaders)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._items: dict[str, tuple[str, str]] = {}
        for key, value in items:
            self._items[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def get(self, key: str, default=None):  # type: ignore[override]
        item = self._items.get(key.lower())
        return default if item is None else item[1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Query(Mapping[str, str]):
    """Multi-valued query string: ``get`` returns the first value, ``getlist`` all of them."""

    def __init__(self, query_string: str = ""):
        self._values: dict[str, list[str]] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            self._values.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> str:
        return self._values[key][0]

    def getlist(self, key: str) -> list[str]:
        return list(self._values.get(key, []))

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Event:
    __slots__ = ("body", "headers", "method", "query", "path")

    def __init__(self, body: bytes, headers: Headers, method: str, query: Query, path: str):
        self.body = body
        self.headers = headers
        self.method = method
        self.query = query
        self.path = path


class Context:
    __slots__ = ("hostname",)

    def __init__(self, hostname: str | None = None):
        self.hostname = hostname or os.environ.get("HOSTNAME", "localhost")
