"""Hostile texts for the tokenizer guard: the slowest inputs found, and a hypothesis strategy.

The slow ones make spaCy's tokenizer peel one affix character at a time off a whitespace-free run
(``!``, ``?``, ``*``, ``)``, currency signs, ``♥``, emoji ...): about quadratic time, GIL held.
"""

from __future__ import annotations

from hypothesis import strategies as st

MAX_TEXT_CHARS = 100_000  # the documented limit (docs/operations.md, settings.max_text_chars)

# The slowest we found per class (unguarded tokenizer, 1,000-char run): € 436 ms, = 336 ms, 😀 200 ms,
# ! 156 ms; runs of letters, dots, dashes, CJK, URLs: ~1 ms.
SLOWEST = {
    "reproducer: word + 14,000 x !": "Some word" + "!" * 14_000,
    "reproducer: 99,990 x emoji + Berlin": "😀" * 99_990 + " Berlin",
    "100,000 x €": "€" * 100_000,
    "runs of 64 x € (the longest unguarded run)": " ".join(["€" * 64] * 1540)[:MAX_TEXT_CHARS],
    "100,000 x )": ")" * 100_000,
    "Tim Cook in Berlin, then 50,000 mixed symbols": "Tim Cook visited Berlin. " + "!?*)♥😀€“”…" * 5_000,
}

_AFFIXES = list("!?*)(]['\"`#$%&+=€£¥♥☺…—–«»“”:;,.-/\\<>~^@|_¡¿。、！？") + ["😀", "🇺🇸", "👍🏽", "❤️", "👨‍👩‍👧"]
_MARKS = ["\u0301", "\u0308", "\u200d", "\u200b", "\ufe0f"]
_SCRIPTS = list("aZé9ßжЖ日本語中文한국어عربيहिन्दीΩ") + ["e\u0301"]
_WORDS = ["Tim Cook", "Berlin", "Apple", "Monday", "$45", "3 March 2024", "New York", "http://example.com/a?b=c"]
_SPACE = [" ", "\n", "  ", "\t", "\u00a0", "\r\n"]
units = st.sampled_from(_AFFIXES + _MARKS + _SCRIPTS + _WORDS + _SPACE)


@st.composite
def hostile_texts(draw, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A text of 1 to ``max_chars`` characters made of a few segments, each a unit or a short pattern of
    units (symbols, punctuation, emoji, combining marks, mixed scripts, words) repeated up to
    ``max_chars`` times, mostly without whitespace; never empty or whitespace only."""
    segments = []
    for _ in range(draw(st.integers(1, 4))):
        pattern = "".join(draw(st.lists(units, min_size=1, max_size=6)))
        repeat = draw(st.one_of(st.integers(1, 80), st.integers(1, max_chars // len(pattern) or 1)))
        segments.append(pattern * repeat)
        segments.append(draw(st.sampled_from(["", " ", "\n", " Berlin "])))
    text = "".join(segments)[:max_chars]
    return text if text.strip() else "Berlin" + text[:max_chars - 6]


# -- over HTTP, against a real ner-processor process ------------------------------------------------

HANG_S = 60.0  # an answer later than this counts as a hang (REQUEST_TIMEOUT_S is 20)


def send_watching(fn, text: str, request_id: str, *, plain: bool = False) -> dict:
    """POST ``text`` to the real function ``fn`` (JSON with ``request_id``, or text/plain with
    ``X-Call-Id``) and, while it is in flight, GET readiness and /metrics back to back.

    Returns ``status`` (int, or ``"hang"``/the exception name), ``body``, ``elapsed`` (s), and the slowest
    readiness and /metrics answers meanwhile (s) with their statuses."""
    import json
    import threading
    import time

    from tests.fixtures.servers import call

    outcome: dict = {}

    def send():
        started = time.perf_counter()
        try:
            if plain:
                status, _, body = call(fn, body=text, content_type="text/plain",
                                       headers={"X-Call-Id": request_id}, timeout=HANG_S)
            else:
                # UTF-8, not \u escapes: 99,990 emoji are 400 KB, as the issue sent them, not 1.2 MB.
                payload = json.dumps({"text": text, "request_id": request_id}, ensure_ascii=False)
                status, _, body = call(fn, body=payload, timeout=HANG_S)
        except TimeoutError:
            status, body = "hang", None
        except OSError as exc:
            status, body = type(exc).__name__, None
        outcome.update(status=status, body=body, elapsed=time.perf_counter() - started)

    sender = threading.Thread(target=send)
    sender.start()
    probes = {"ready": [], "metrics": []}
    while sender.is_alive() or not probes["metrics"]:
        for name, path in (("ready", "/_/ready"), ("metrics", "/metrics")):
            started = time.perf_counter()
            try:
                status = call(fn, path, method="GET", content_type=None, timeout=HANG_S)[0]
            except TimeoutError:
                status = "hang"
            except OSError as exc:
                status = type(exc).__name__
            probes[name].append((time.perf_counter() - started, str(status)))
    sender.join()
    outcome.update(slowest_ready=max(probes["ready"])[0], ready_statuses={s for _, s in probes["ready"]},
                   slowest_metrics=max(probes["metrics"])[0],
                   metrics_statuses={s for _, s in probes["metrics"]}, probes=len(probes["ready"]))
    return outcome


def stored_rows(admin_dsn: str, request_id: str) -> tuple[bool, list[tuple]]:
    """(is a document stored under ``request_id``, its entity rows in order as (text, label, start, end))."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        document = conn.execute("SELECT 1 FROM nlp.documents WHERE request_id = %s", (request_id,)).fetchone()
        rows = conn.execute("SELECT text, label, start_char, end_char FROM nlp.entities WHERE request_id = %s"
                            " ORDER BY ordinal", (request_id,)).fetchall()
    return document is not None, [tuple(row) for row in rows]


def check_answer(text: str, outcome: dict, admin_dsn: str, request_id: str) -> None:
    """The answer is a 200 whose offsets index ``text`` and whose entities are exactly the stored rows, or
    a 413 ``text_too_long`` with nothing stored. Raises AssertionError otherwise."""
    status, body = outcome["status"], outcome["body"]
    is_stored, rows = stored_rows(admin_dsn, request_id)
    if status == 413:
        assert body["error"] == "text_too_long" and body["request_id"] == request_id, body
        assert not is_stored, "refused but stored"
        return
    assert status == 200, (status, body)
    answer = [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in body["entities"]]
    for entity_text, _, start, end in answer:
        assert text[start:end] == entity_text
    assert is_stored and rows == answer
