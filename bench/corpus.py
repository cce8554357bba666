"""Deterministic generator of realistic English user comments for benchmarks.

Why generated and not a packaged corpus: the benchmark needs 100k+ *distinct* comments whose
vocabulary keeps growing (new surnames, company names, usernames, order numbers...) so that
memory tests really exercise spaCy's StringStore/Vocab growth, plus a controlled length
distribution (median ~100-200 chars, a tail of multi-paragraph reviews up to 5,000+ chars, and a few
20k-char texts). All text comes from the templates and word lists in bench/corpus_data.py, written for this project;
no downloads, no third-party data, no licence questions.

Public API:
    generate(n, seed=7) -> list[str]     n comments, same output for the same (n, seed)
    iter_generate(n, seed=7)             the same comments, lazily
    long_texts(k, seed=11, chars=20_000) -> list[str]   k very long texts (~`chars` characters)

CLI: python -m bench.corpus --n 10000 --stats
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator

from bench.corpus_data import (
    ADJ_BAD,
    ADJ_GOOD,
    AIRLINES,
    ARTISTS,
    BANKS,
    BOOKING_SITES,
    BRANDS,
    CAR_RENTALS,
    CITIES,
    CLOSERS,
    COMPANY_ENDS,
    COMPANY_SUFFIXES,
    COUNTRIES,
    COURIERS,
    DELIVERY_APPS,
    DISHES,
    DOMAIN_WEIGHTS,
    DOMAINS,
    EMOJI,
    EVENTS,
    FIRST_NAMES,
    FLIGHT_CODES,
    HOTELS,
    LANDMARKS,
    MIDS,
    MONTHS,
    ONSETS,
    OPENERS,
    PLAYERS_FIRST,
    PRODUCT_LINES,
    PRODUCTS,
    PROMOS,
    RACES,
    REAL_SURNAMES,
    RELATIVE_DATES,
    RESTAURANT_HEADS,
    RESTAURANT_TAILS,
    SALES,
    SPORT_EVENTS,
    STREAMERS,
    SURNAME_ENDS,
    TEAMS,
    TELCOS,
    TEMPLATES,
    WEEKDAYS,
)

Gen = Callable[[], str]

# Slots filled by a uniform pick from one list (a slot name ending in 2 is a second, independent pick).
PICKS: dict[str, tuple[str, ...] | list[str]] = {
    "brand": BRANDS,
    "airline": AIRLINES,
    "hotel": HOTELS,
    "bank": BANKS,
    "courier": COURIERS,
    "line": PRODUCT_LINES,
    "city": CITIES,
    "city2": CITIES,
    "country": COUNTRIES,
    "landmark": LANDMARKS,
    "event": EVENTS,
    "artist": ARTISTS,
    "sale": SALES,
    "sport_event": SPORT_EVENTS,
    "race": RACES,
    "streamer": STREAMERS,
    "telco": TELCOS,
    "booking": BOOKING_SITES,
    "rental": CAR_RENTALS,
    "delivery": DELIVERY_APPS,
    "when": RELATIVE_DATES,
    "team": TEAMS,
    "team2": TEAMS,
    "month": MONTHS,
    "weekday": WEEKDAYS,
    "dish": DISHES,
    "good": ADJ_GOOD,
    "bad": ADJ_BAD,
}


def _picker(rnd: Callable[[], float], seq) -> Gen:
    n = len(seq)
    return lambda: seq[int(rnd() * n)]


def _name_builders(rng: random.Random) -> dict[str, Gen]:
    """People, companies, products and handles: ~half from the fixed lists, half synthesized from
    syllables (ONSETS x MIDS x endings) so new names keep appearing deep into a 100k-comment run."""
    rnd, randint = rng.random, rng.randint

    def one(seq):
        return seq[int(rnd() * len(seq))]

    def surname() -> str:
        # ~45% real surnames, the rest synthesized (50*19*30 combinations, rarely double-barrelled).
        r = rnd()
        if r < 0.45:
            return one(REAL_SURNAMES)
        s = one(ONSETS) + one(MIDS) + one(SURNAME_ENDS)
        if r > 0.97:
            s += "-" + one(REAL_SURNAMES)
        return s

    first = _picker(rnd, FIRST_NAMES)

    def company() -> str:
        r = rnd()
        if r < 0.35:
            return one(BRANDS)
        name = one(ONSETS) + one(MIDS).lower() + one(COMPANY_ENDS)
        if r < 0.7:
            return name
        return f"{name} {one(COMPANY_SUFFIXES)}"

    def user() -> str:
        f = one(FIRST_NAMES).lower()
        sep = "_" if rnd() < 0.5 else ""
        tail = one(ONSETS).lower() if rnd() < 0.5 else ""
        return f"@{f}{sep}{tail}{randint(1, 9999)}"

    def product() -> str:
        if rnd() < 0.6:
            return one(PRODUCTS)
        return f"{company().split(' ')[0]} {one(PRODUCT_LINES)} {randint(2, 900)}"

    def person() -> str:
        return f"{first()} {surname()}"

    return {
        "first": first,
        "person": person,
        "person2": person,
        "company": company,
        "product": product,
        "product2": product,
        "user": user,
        "email": lambda: f"{one(FIRST_NAMES).lower()}.{surname().lower()}@example.com",
        "player": lambda: f"{one(PLAYERS_FIRST)} {surname()}",
        "restaurant": lambda: f"{one(RESTAURANT_HEADS)} {one(RESTAURANT_TAILS)}",
    }


def _when_builders(rng: random.Random) -> dict[str, Gen]:
    """Dates and times in the shapes people type them."""
    rnd, randint = rng.random, rng.randint

    def date() -> str:
        r = rnd()
        month = MONTHS[int(rnd() * 12)]
        day = randint(1, 28)
        if r < 0.3:
            return f"{month} {day}"
        if r < 0.45:
            return f"{day} {month} {randint(2019, 2025)}"
        if r < 0.55:
            return f"{randint(1, 12)}/{day}"
        if r < 0.65:
            return f"{randint(2019, 2025)}-{randint(1, 12):02d}-{day:02d}"
        return WEEKDAYS[int(rnd() * 7)]

    def time_() -> str:
        r = rnd()
        h = randint(1, 12)
        if r < 0.4:
            return f"{h}:{randint(0, 59):02d}{'am' if rnd() < 0.5 else 'pm'}"
        if r < 0.7:
            return f"{h} {'am' if rnd() < 0.5 else 'pm'}"
        if r < 0.85:
            return f"{randint(0, 23):02d}:{randint(0, 59):02d}"
        return "midnight" if rnd() < 0.5 else "noon"

    return {
        "date": date,
        "time": time_,
        "year": lambda: str(randint(2008, 2024)),
        "time2": lambda: f"{randint(2, 4)}:{randint(0, 59):02d}:{randint(0, 59):02d}",
    }


def _number_builders(rng: random.Random) -> dict[str, Gen]:
    """Amounts, percentages and the ids that keep new strings arriving (orders, tickets, SKUs...)."""
    rnd, randint = rng.random, rng.randint

    def money() -> str:
        r = rnd()
        if r < 0.55:
            v = randint(3, 1999)
            return f"${v}.{randint(0, 99):02d}" if rnd() < 0.5 else f"${v}"
        if r < 0.7:
            return f"€{randint(5, 900)}"
        if r < 0.8:
            return f"£{randint(2, 700)}"
        return f"{randint(10, 5000):,} dollars"

    def percent() -> str:
        v = randint(2, 80)
        return f"{v}%" if rnd() < 0.7 else f"{v} percent"

    def order() -> str:
        r = rnd()
        if r < 0.4:
            return f"#{randint(100000, 99999999)}"
        if r < 0.7:
            return f"{randint(100, 999)}-{randint(1000000, 9999999)}-{randint(1000000, 9999999)}"
        return f"ORD{randint(10000, 9999999)}"

    def ticket() -> str:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return f"{letters[int(rnd() * 24)]}{letters[int(rnd() * 24)]}-{randint(10000, 999999)}"

    return {
        "money": money,
        "bigmoney": lambda: f"${randint(2, 120)}.{randint(1, 9)} million",
        "percent": percent,
        "percent2": percent,
        "num": lambda: str(randint(2, 90)),
        "score": lambda: f"{randint(1, 5)}-{randint(0, 3)}",
        "order": order,
        "ticket": ticket,
        "sku": lambda: f"{'XRTMKV'[int(rnd() * 6)]}{randint(10, 9999)}",
        "flight": lambda: f"{FLIGHT_CODES[int(rnd() * 10)]}{randint(10, 9999)}",
        "promo": lambda: f"{PROMOS[int(rnd() * 5)]}{randint(5, 75)}",
        "phone": lambda: f"+1 {randint(200, 989)}-{randint(200, 999)}-{randint(1000, 9999)}",
    }


def build_generators(rng: random.Random) -> dict[str, Gen]:
    """Slot name -> zero-argument generator drawing from ``rng`` (closures: the corpus is generated at
    tens of thousands of comments per second). Every slot any template names has a generator."""
    gens = {slot: _picker(rng.random, seq) for slot, seq in PICKS.items()}
    gens |= _name_builders(rng) | _when_builders(rng) | _number_builders(rng)
    return gens


class _Slots(dict):
    """format_map mapping that generates a slot on first use and then keeps it for the comment."""

    __slots__ = ("gens",)

    def __missing__(self, key: str) -> str:
        value = self.gens[key]()
        self[key] = value
        return value


def _typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent letters somewhere in the text, like a fast thumb would."""
    if len(text) < 12:
        return text
    i = rng.randrange(1, len(text) - 2)
    a, b = text[i], text[i + 1]
    if not (a.isalpha() and b.isalpha()):
        return text
    return text[:i] + b + a + text[i + 2 :]


def _sentence_count(r: float) -> int:
    # Calibrated so the median comment is ~120-150 chars, ~10% exceed 400 chars and ~2.5% are
    # multi-paragraph reviews of 1,500-7,000 chars.
    if r < 0.32:
        return 1
    if r < 0.66:
        return 2
    if r < 0.82:
        return 3
    if r < 0.93:
        return 4 + int((r - 0.82) * 40)  # 4..8
    if r < 0.975:
        return 9 + int((r - 0.93) * 300)  # 9..22
    return 23 + int((r - 0.975) * 3400)  # 23..107 (up to ~7,000 chars)


def _paragraphs(sentences: list[str], rng: random.Random) -> str:
    if len(sentences) < 8:
        return " ".join(sentences)
    out: list[str] = []
    i = 0
    while i < len(sentences):
        k = rng.randint(3, 7)
        out.append(" ".join(sentences[i : i + k]))
        i += k
    return "\n\n".join(out)


def _comment(rng: random.Random, gens: dict[str, Callable[[], str]], n_sent: int) -> str:
    rnd = rng.random
    domain = rng.choices(DOMAINS, weights=DOMAIN_WEIGHTS)[0]
    slots = _Slots()
    slots.gens = gens
    sentences = []
    used: set[str] = set()
    for i in range(n_sent):
        # Long reviews wander across domains (a trip with a flight, a hotel, a meal...).
        if i and rnd() < 0.3:
            domain = DOMAINS[int(rnd() * len(DOMAINS))]
            slots = _Slots()
            slots.gens = gens
        tpls = TEMPLATES[domain]
        tpl = tpls[int(rnd() * len(tpls))]
        if tpl in used:  # people rarely write the same sentence twice: retry, then move on
            tpl = tpls[int(rnd() * len(tpls))]
            if tpl in used:
                domain = DOMAINS[int(rnd() * len(DOMAINS))]
                slots = _Slots()
                slots.gens = gens
                tpls = TEMPLATES[domain]
                tpl = tpls[int(rnd() * len(tpls))]
        used.add(tpl)
        sent = tpl.format_map(slots)
        if sent[0].islower():
            sent = sent[0].upper() + sent[1:]
        sentences.append(sent)
    text = _paragraphs(sentences, rng)
    r = rnd()
    if r < 0.12:
        text = OPENERS[int(rnd() * len(OPENERS))] + text[0].lower() + text[1:]
    elif r < 0.22:
        text += CLOSERS[int(rnd() * len(CLOSERS))]
    r = rnd()
    if r < 0.10:
        text += " " + EMOJI[int(rnd() * len(EMOJI))]
    elif r < 0.13:
        text = EMOJI[int(rnd() * len(EMOJI))] * rng.randint(1, 3) + " " + text
    r = rnd()
    if r < 0.07:
        text = text.lower()  # casual casing: "flew delta from boston..."
    elif r < 0.09:
        text = text.upper()  # shouting
    if rnd() < 0.06:
        text = _typo(text, rng)
    if rnd() < 0.03:
        text = text.replace(" ", "  ", 1)  # stray double space, as people type
    return text


def iter_generate(n: int, seed: int = 7) -> Iterator[str]:
    """Yield `n` comments; deterministic for a given (n, seed), and a prefix of a longer run."""
    rng = random.Random(seed)
    gens = build_generators(rng)
    rnd = rng.random
    for _ in range(n):
        yield _comment(rng, gens, _sentence_count(rnd()))


def generate(n: int, seed: int = 7) -> list[str]:
    """Return `n` realistic English comments (deterministic; generate(k) is a prefix of generate(n>k))."""
    return list(iter_generate(n, seed))


def long_texts(k: int, seed: int = 11, chars: int = 20_000) -> list[str]:
    """Return `k` very long texts (~`chars` characters each): multi-paragraph review dumps."""
    rng = random.Random(seed)
    gens = build_generators(rng)
    out = []
    for _ in range(k):
        parts: list[str] = []
        size = 0
        while size < chars:
            part = _comment(rng, gens, rng.randint(3, 8))
            parts.append(part)
            size += len(part) + 2
        out.append("\n\n".join(parts)[:chars].rsplit(" ", 1)[0])
    return out


def _percentile(sorted_vals: list[int], q: float) -> int:
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def stats(texts: list[str]) -> str:
    lengths = sorted(len(t) for t in texts)
    n = len(texts)
    lines = [f"documents: {n:,}   total chars: {sum(lengths):,}"]
    lines.append(
        "length percentiles (chars): "
        + "  ".join(
            f"p{int(q * 100)}={_percentile(lengths, q)}" for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
        )
        + f"  max={lengths[-1]}"
    )
    lines.append(
        f"share > 400 chars: {sum(x > 400 for x in lengths) / n:.1%}   > 1000: "
        f"{sum(x > 1000 for x in lengths) / n:.1%}   > 5000: {sum(x > 5000 for x in lengths)}"
    )
    lines.append("distinct whitespace tokens as documents accumulate (new strings keep arriving):")
    seen: set[str] = set()
    step = max(1, n // 10)
    prev = 0
    for i, t in enumerate(texts, 1):
        seen.update(t.split())
        if i % step == 0 or i == n:
            lines.append(f"  after {i:>8,} docs: {len(seen):>9,} distinct (+{len(seen) - prev:,})")
            prev = len(seen)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stats", action="store_true", help="print length percentiles and token growth")
    ap.add_argument("--show", type=int, default=0, help="print the first N comments")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    texts = generate(args.n, args.seed)
    dt = time.perf_counter() - t0
    for t in texts[: args.show]:
        print(repr(t))
    if args.stats:
        print(f"generated in {dt:.2f}s ({args.n / dt:,.0f} docs/s)")
        print(stats(texts))


if __name__ == "__main__":
    main()
