"""Hostile texts for the tokenizer guard: the slowest inputs found, and a hypothesis strategy.

The slow ones make spaCy's tokenizer peel one affix character at a time off a whitespace-free run
(``!``, ``?``, ``*``, ``)``, currency signs, ``♥``, emoji ...): about quadratic time, GIL held.
"""

from __future__ import annotations

from hypothesis import strategies as st

MAX_TEXT_CHARS = 100_000  # the documented limit (README, settings.max_text_chars)

# The slowest we found per class (unguarded tokenizer, 1,000-char run): € 436 ms, = 336 ms, 😀 200 ms,
# ! 156 ms; runs of letters, dots, dashes, CJK, URLs: ~1 ms.
SLOWEST = {
    "issue 14 reproducer: word + 14,000 x !": "Some word" + "!" * 14_000,
    "issue 14 reproducer: 99,990 x emoji + Berlin": "😀" * 99_990 + " Berlin",
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
