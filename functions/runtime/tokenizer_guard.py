"""Bounded tokenizer time: texts spaCy's tokenizer would take seconds or minutes on, in bounded steps.

Why: spaCy's tokenizer peels prefixes and suffixes off a whitespace-free span one at a time and runs
its suffix regex over the whole remaining span each time, so a span of n affix characters (``!``,
``?``, ``*``, ``)``, ``€``, ``♥``, emoji ...) costs about n² regex steps — 10,000 × ``!`` took 37 s —
and it does all of a text in one call that never releases the GIL, freezing every thread of the
process (readiness, /metrics, the HTTP server). The model components after it release the GIL.

What: a text goes to spaCy's tokenizer whole (exactly as before) when that is cheap for sure: no
whitespace-free run longer than :data:`MAX_RUN_CHARS` and at most :data:`SEGMENT_CHARS` affix candidates
(characters that are neither letters, digits nor whitespace, plus ``_``; each may cost one peel over a
run of at most MAX_RUN_CHARS) and at most about :data:`WHOLE_MAX_TOKENS` tokens: ~0.1 s at worst.
Ordinary prose up to ~45,000 characters stays on this path. Otherwise :func:`make_doc` builds its Doc
piecewise, so that no single tokenizer call holds the GIL for long:

- The parts of the text outside over-long runs are tokenized by spaCy in segments of about
  :data:`SEGMENT_CHARS`, cut only just before a non-space character that follows whitespace. spaCy
  tokenizes each whitespace-delimited span on its own, so these cuts give exactly spaCy's tokens (and
  their norms) — tests check it on the samples and the benchmark corpus.
- An over-long run is cut into pieces of :data:`PIECE_CHARS`; a piece with a letter or digit is
  tokenized by spaCy (a word glued to ``!!!!`` still comes out as a word), a piece without one becomes
  one token. Only such runs tokenize differently from spaCy (which would never finish them in time).

The pieces are joined with ``Doc.from_docs(..., ensure_whitespace=False)``: ``doc.text`` is exactly the
submitted text, so entity offsets index the submitted text. Finally a text of more than
:data:`MAX_TEXT_TOKENS` tokens is refused (413 ``text_too_long``) before any model time is spent: model
time grows with tokens, and 100,000 one-character tokens took the model 17 s and 1.7 GB. That limit is
the bound on model time per text: 30,000 tokens took 5.5 s (10 s over HTTP) on the shared 2-core machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from functions.runtime.errors import PayloadTooLarge

# Whitespace-free runs up to this length go to spaCy whole. The samples and the benchmark corpus have
# none longer than 36 (an e-mail address); spaCy's cost for a run grows with its length squared.
MAX_RUN_CHARS = 64
# Over-long runs are tokenized in pieces this long (a piece of 32 affix characters: ~1 ms).
PIECE_CHARS = 32
# One tokenizer call gets about this many characters (or affix candidates): the GIL is free between calls.
SEGMENT_CHARS = 2000
# A text estimated to have more tokens than this is tokenized piecewise even without affixes.
WHOLE_MAX_TOKENS = 20_000
# Model time and memory grow with tokens: ~0.1-0.3 ms and ~20 KB per token on this model. 100,000
# characters of ordinary prose are ~21,000 tokens, so no comment of prose within MAX_TEXT_CHARS is refused.
MAX_TEXT_TOKENS = 30_000

_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}")
# Where a text may be cut without changing spaCy's tokens: before a non-space character after whitespace.
_CUT = re.compile(r"(?<=\s)(?=\S)")
# Characters spaCy's prefix/suffix/infix rules may peel off a span one at a time.
_AFFIX_CANDIDATE = re.compile(r"[^\w\s]|_")


def needs_guard(text: str) -> bool:
    """True if ``text`` is tokenized piecewise by :func:`make_doc` rather than by spaCy in one call."""
    if _LONG_RUN.search(text) is not None:
        return True
    if len(text) <= SEGMENT_CHARS:
        return False
    affixes = len(_AFFIX_CANDIDATE.findall(text))
    # Tokens cost the tokenizer ~3-6 us each: a span and the whitespace after it are at most two tokens.
    return affixes > SEGMENT_CHARS or affixes + 2 * len(text.split()) > WHOLE_MAX_TOKENS


def make_doc(nlp, text: str):
    """The spaCy ``Doc`` of ``text`` (``doc.text == text``), tokenized in bounded calls as described above.

    Raises PayloadTooLarge (413, ``text_too_long``) as soon as it has more than :data:`MAX_TEXT_TOKENS`
    tokens, so a refused text costs at most the tokenizer time of that many tokens.
    """
    from spacy.tokens import Doc

    parts = []
    tokens = 0
    for part in _parts(nlp, text):
        tokens += len(part)
        if tokens > MAX_TEXT_TOKENS:  # stop tokenizing as soon as the text is known to be refused
            _check_tokens(part, len(text), tokens)
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    doc = Doc.from_docs(parts, ensure_whitespace=False)
    # from_docs marks where each part began as a sentence start, and spaCy's NER never lets an entity
    # cross one ("two | hours" lost its TIME): unmark them, so the model sees what spaCy's tokenizer gives.
    start = 0
    for part in parts[:-1]:
        start += len(part)
        doc[start].is_sent_start = None
    return doc


def _parts(nlp, text: str) -> Iterator:
    """The Docs that make up ``text``, in order (see the module docstring)."""
    position = 0
    for run in _LONG_RUN.finditer(text):
        yield from _segments(nlp.tokenizer, text, position, run.start())
        # The run takes the whitespace after it: a part must not start with whitespace (spaCy would
        # make it a token of its own instead of the trailing space of the run's last token).
        end = _next_cut(text, run.end())
        yield from _run_pieces(nlp, text[run.start():end], run.end() - run.start())
        position = end
    yield from _segments(nlp.tokenizer, text, position, len(text))


def pipe(nlp, texts: Sequence[str], batch_size: int) -> Iterator:
    """``nlp.pipe(texts)`` with the guard: yields one ``Doc`` per text, in order, or the PayloadTooLarge
    refusing that text. Texts that need no guard run exactly as before, in one ``nlp.pipe`` call."""
    # Stand-ins for spaCy without a tokenizer (the engine's scheduling tests) get their texts as given.
    # A text of at most MAX_TEXT_TOKENS characters cannot have more tokens than that.
    if not hasattr(nlp, "tokenizer") or all(len(text) <= MAX_TEXT_TOKENS and not needs_guard(text)
                                            for text in texts):
        yield from nlp.pipe(texts, batch_size=batch_size)
        return
    inputs: list = []
    refused: dict[int, PayloadTooLarge] = {}
    for index, text in enumerate(texts):
        try:
            if needs_guard(text):
                inputs.append(make_doc(nlp, text))
            elif len(text) > MAX_TEXT_TOKENS:  # one cheap tokenizer call, counted before the model runs
                inputs.append(_check_tokens(nlp.tokenizer(text), len(text)))
            else:
                inputs.append(text)
        except PayloadTooLarge as exc:
            refused[index] = exc
    docs = nlp.pipe(inputs, batch_size=batch_size)  # nlp.pipe takes Docs and strings alike
    for index in range(len(texts)):
        yield refused[index] if index in refused else next(docs)


def _check_tokens(doc, chars: int, tokens: int | None = None):
    """``doc`` if ``tokens`` (default ``len(doc)``) is within MAX_TEXT_TOKENS, else raises PayloadTooLarge."""
    tokens = len(doc) if tokens is None else tokens
    if tokens > MAX_TEXT_TOKENS:
        raise PayloadTooLarge(f"the text of {chars:,} characters has more than {MAX_TEXT_TOKENS:,} tokens "
                              "(the limit)", code="text_too_long")
    return doc


def _next_cut(text: str, position: int) -> int:
    """The first cut position at or after ``position`` (``len(text)`` if there is none)."""
    found = _CUT.search(text, position)
    return found.start() if found else len(text)


def _segments(tokenizer, text: str, start: int, end: int) -> Iterator:
    """spaCy's tokens of ``text[start:end]`` in calls of about SEGMENT_CHARS characters each."""
    while end - start > SEGMENT_CHARS:
        cut = start
        for found in _CUT.finditer(text, start + 1, start + SEGMENT_CHARS + 1):
            cut = found.start()
        if cut == start:  # no cut point within reach (long whitespace): take the next one
            cut = min(_next_cut(text, start + SEGMENT_CHARS), end)
        yield tokenizer(text[start:cut])
        start = cut
    if end > start:
        yield tokenizer(text[start:end])


def _run_pieces(nlp, run_and_space: str, run_length: int) -> Iterator:
    """Tokens of an over-long run (followed by its whitespace) in pieces of PIECE_CHARS."""
    from spacy.tokens import Doc

    last = ((run_length - 1) // PIECE_CHARS) * PIECE_CHARS
    for start in range(0, last, PIECE_CHARS):
        piece = run_and_space[start:start + PIECE_CHARS]
        if any(char.isalnum() for char in piece):
            yield nlp.tokenizer(piece)
        else:  # only symbols, punctuation, emoji, marks: one token, no tokenizer time
            yield Doc(nlp.vocab, words=[piece], spaces=[False])
    yield nlp.tokenizer(run_and_space[last:])
