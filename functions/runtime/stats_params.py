"""entity-stats' request parameters: parsing and validation, one function per parameter.

``GET ?window=1h&label=ORG&limit=20&source=spring-sale&consistency=eventual|strong&min_lsn=X/Y``; unknown
parameters are ignored (dashboards add cache busters). Every function raises InvalidField (422) naming its
parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from functions.runtime.errors import InvalidField

Consistency = Literal["eventual", "strong"]

# Request limits (the handler validates; the service re-checks what it relies on).
MAX_WINDOW = timedelta(days=30)
MAX_LIMIT = 100
DEFAULT_WINDOW = "1h"
DEFAULT_LIMIT = 20
# spaCy's English pipelines label entities with the OntoNotes 5 scheme; custom labels are accepted too.
ONTONOTES_LABELS = frozenset({
    "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
    "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
})

_WINDOW_RE = re.compile(r"^\s*(\d{1,7})\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LABEL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_LSN_RE = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


@dataclass(frozen=True)
class StatsRequest:
    """A validated entity-stats request; ``window_text`` is the caller's spelling ("24h" stays "24h")."""

    request_id: str
    window: timedelta
    window_text: str
    label: str | None
    limit: int
    consistency: Consistency
    min_lsn: str | None
    source: str = ""


def parse_window(raw: str | None) -> tuple[str, timedelta]:
    """``15m`` / ``1h`` / ``24h`` / ``7d`` (s, m, h, d, w) -> (normalized text, timedelta), at most 30 days.
    Raises InvalidField('window')."""
    text = DEFAULT_WINDOW if raw is None or raw.strip() == "" else raw
    match = _WINDOW_RE.match(text)
    if not match:
        raise InvalidField("window", "'window' must be a number and a unit s, m, h, d or w, like 15m, 1h, "
                                     "24h or 7d")
    amount, unit = int(match.group(1)), match.group(2).lower()
    window = timedelta(seconds=amount * _WINDOW_UNITS[unit])
    if amount <= 0:
        raise InvalidField("window", "'window' must be longer than zero")
    if window > MAX_WINDOW:
        raise InvalidField("window", "'window' must be at most 30d")
    return f"{amount}{unit}", window


def parse_label(raw: str | None) -> str | None:
    """An entity label (case-insensitive; e.g. ORG, PERSON, GPE or a custom uppercase token), or None for
    all labels. Raises InvalidField('label')."""
    if raw is None or raw.strip() == "":
        return None
    label = raw.strip().upper()
    if not _LABEL_RE.match(label):
        raise InvalidField("label", "'label' must be an entity label such as ORG, PERSON or GPE "
                                    "(letters, digits and '_', at most 32)")
    return label


def parse_limit(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw.strip())
    except ValueError:
        raise InvalidField("limit", f"'limit' must be an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidField("limit", f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return limit


def parse_consistency(raw: str | None) -> Consistency:
    value = "eventual" if raw is None or raw.strip() == "" else raw.strip().lower()
    if value not in ("eventual", "strong"):
        raise InvalidField("consistency", "'consistency' must be 'eventual' or 'strong'")
    return value  # type: ignore[return-value]


def parse_lsn(raw: str | None, field: str = "min_lsn") -> str | None:
    """A PostgreSQL LSN ``X/Y`` (hex), normalized to upper case, or None. Raises InvalidField(field)."""
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().upper()
    if not _LSN_RE.match(value):
        raise InvalidField(field, f"'{field}' must be a PostgreSQL LSN like 0/16B3748 (hex X/Y)")
    return value


def parse_source(raw: str | None) -> str:
    """A document source (the campaign) as ner-processor stored it: 1-200 characters; '' (absent or
    empty) for all sources. Raises InvalidField('source')."""
    if raw is None or raw == "":
        return ""
    if len(raw) > 200 or "\x00" in raw:
        raise InvalidField("source", "'source' must be a source of at most 200 characters")
    return raw


def parse_query_params(query: Any) -> dict[str, Any]:
    """Validate entity-stats query parameters (``event.query``: anything with ``.get``).

    Returns keyword arguments for :meth:`AnalyticsService.query` plus ``window_text``. Unknown
    parameters are ignored (dashboards add cache busters). Raises InvalidField naming the field.
    """
    window_text, window = parse_window(query.get("window"))
    return {
        "window": window,
        "window_text": window_text,
        "label": parse_label(query.get("label")),
        "limit": parse_limit(query.get("limit")),
        "consistency": parse_consistency(query.get("consistency")),
        "min_lsn": parse_lsn(query.get("min_lsn")),
        "source": parse_source(query.get("source")),
    }


def format_window(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _WINDOW_UNITS[unit] == 0:
            return f"{seconds // _WINDOW_UNITS[unit]}{unit}"
    return f"{seconds}s"
