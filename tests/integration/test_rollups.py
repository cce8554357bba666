"""The rollup worker against a real primary + replica (a private cluster: these tests read exact counts):
answers at rest equal the exact counts of the base tables or carry a bound that contains them, the
watermark never passes a transaction that is still running, late and historical rows are counted once,
and a worker that lost the race changes nothing."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from functions.runtime import topk
from functions.runtime.rollup import HOUR, LOCK_KEY, RollupWorker
from functions.runtime.settings import Settings
from functions.runtime.stores.rollups import PgRollupStore
from tests.fixtures.pg import Rollups, private_cluster

pytestmark = pytest.mark.integration

LABELS = ("ORG", "PERSON", "GPE", "DATE")


@pytest.fixture(scope="module")
def cluster():
    from devtools.pgcluster import PgBinariesNotFound, find_pg_bin

    try:
        find_pg_bin()
    except PgBinariesNotFound as exc:
        pytest.skip(str(exc))
    with private_cluster(prefix="r") as started:
        yield started


@pytest.fixture
def clean(cluster):
    """Empty raw tables and rollups; a fresh driver (its memory matches the empty tables)."""
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        conn.execute("TRUNCATE nlp.entities, nlp.documents, nlp.document_keys, analytics.entity_top,"
                     " analytics.entity_buckets, analytics.document_buckets")
    driver = Rollups(cluster)
    yield driver
    driver.close()


def insert(cluster, rows, *, change_id_null: bool = False) -> None:
    """``rows``: (source, label, text, seconds ago); one document per row, inserted as the owner."""
    with psycopg.connect(cluster.dsn("owner", "primary")) as conn, conn.transaction(), conn.cursor() as cur:
        doc_rows, ent_rows = [], []
        for i, (source, label, text, ago) in enumerate(rows):
            rid = f"r{time.time_ns()}-{i}"
            doc_rows.append((rid, source, ago))
            ent_rows.append((rid, label, text, text.casefold(), ago, source))
        change = ", NULL" if change_id_null else ""
        change_col = ", change_id" if change_id_null else ""
        cur.executemany(
            "INSERT INTO nlp.documents (request_id, source, model_name, model_version, text_length, text_sha256,"
            f" entity_count, ner_ms, processed_at{change_col}) VALUES (%s, %s, 'm', '1', 50, repeat('a', 64), 1,"
            f" 2.5, now() - make_interval(secs => %s){change})", doc_rows)
        cur.executemany(
            "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char,"
            f" processed_at, source{change_col}) VALUES (%s, 0, %s, %s, %s, 0, 1, now() - make_interval(secs => %s),"
            f" %s{change})", ent_rows)


def zipf_rows(n: int, seed: int, *, minutes: int = 40, sources=("camp-a", "camp-b", None)) -> list[tuple]:
    """``n`` rows whose names follow a heavy-tailed law, spread over the last ``minutes`` whole minutes
    (no row in a partly filled minute at either end: a campaign's minutes are all dense)."""
    rng = random.Random(seed)
    now = time.time()
    first = (now // 60 - minutes) * 60
    return [(rng.choice(sources), rng.choice(LABELS), f"Name{int(600 ** rng.random())}",
             now - first - rng.uniform(1, minutes * 60 - 2)) for _ in range(n)]


def exact_top(cluster, window: str, source: str | None, limit: int, start) -> list[tuple[str, str, int]]:
    """The exact top ``limit`` (label, norm, mentions) from the base tables since ``start``."""
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        return conn.execute(
            "SELECT label, norm, count(*) FROM nlp.entities WHERE processed_at >= %s"
            " AND (%s::text IS NULL OR source = %s) GROUP BY label, norm ORDER BY count(*) DESC, label, norm"
            " LIMIT %s", (start, source, source, limit)).fetchall()


def answer(cluster, window: str, limit: int, *, source: str = "", label: str | None = None):
    """(rows (label, norm, mentions, error), window_start) from the replica as the analyst."""
    with psycopg.connect(cluster.dsn("analyst", "replica"), autocommit=True) as conn:
        rows = conn.execute("SELECT label, norm, mentions, mentions_error FROM analytics.top_entities(%s, %s, %s, %s)",
                            (window, limit, label, source)).fetchall()
        start = conn.execute("SELECT min(window_start) FROM analytics.window_buckets(%s)", (window,)).fetchone()[0]
    return rows, start


@pytest.mark.parametrize("source", ["", "camp-a"])
def test_the_top_20_of_an_hour_at_rest_equal_the_exact_top_20_of_the_base_tables(cluster, clean, source):
    insert(cluster, zipf_rows(40_000, seed=3, minutes=3))
    cluster.wait_for_replay(clean.catch_up())
    got, start = answer(cluster, "1 hour", 20, source=source)
    want = exact_top(cluster, "1 hour", source or None, 21, start)
    truth = {(label, norm): n for label, norm, n in want}
    ties_at_20 = {key for key, n in truth.items() if n == want[19][2]}
    assert {(label, norm) for label, norm, *_ in got} - ties_at_20 == set(list(truth)[:20]) - ties_at_20
    for label, norm, mentions, error in got:  # exact, or within a bound of at most 0.5 %
        assert mentions <= truth[(label, norm)] <= mentions + error and error <= 0.005 * mentions


def test_with_small_lists_every_count_carries_a_bound_that_contains_the_truth(cluster, clean):
    driver = Rollups(cluster, Settings(rollup_top_k=3, rollup_grace_s=2.0))
    try:
        insert(cluster, zipf_rows(6_000, seed=5, minutes=20))
        cluster.wait_for_replay(driver.catch_up())
    finally:
        driver.close()
    got, start = answer(cluster, "1 hour", 30)
    truth = {(label, norm): n for label, norm, n in exact_top(cluster, "1 hour", None, 100_000, start)}
    assert got and any(error > 0 for *_, error in got)
    for label, norm, mentions, error in got:
        assert mentions <= truth[(label, norm)] <= mentions + error


def test_label_mix_and_document_totals_are_exact(cluster, clean):
    rows = zipf_rows(3_000, seed=8)
    insert(cluster, rows)
    cluster.wait_for_replay(clean.catch_up())
    with psycopg.connect(cluster.dsn("analyst", "replica"), autocommit=True) as conn:
        mix = dict(conn.execute("SELECT label, mentions FROM analytics.label_mix('1 hour')").fetchall())
        docs = conn.execute("SELECT sum(documents), sum(ner_ms_sum) FROM analytics.document_buckets"
                            " WHERE resolution = 'minute' AND source = ''").fetchone()
    assert mix == dict(Counter(label for _, label, _, _ in rows))
    assert docs == (3_000, pytest.approx(3_000 * 2.5))


def test_rows_written_into_finished_minutes_rebuild_them_and_count_once(cluster, clean):
    insert(cluster, [("camp-a", "ORG", "Acme", 600)] * 3)
    clean.catch_up()
    insert(cluster, [("camp-a", "ORG", "Acme", 600)] * 2 + [("camp-a", "ORG", "Acme", 1)])  # late + fresh
    cluster.wait_for_replay(clean.catch_up())
    got, _ = answer(cluster, "1 hour", 5)
    assert got == [("ORG", "acme", 6, 0)]


def test_the_watermark_never_passes_a_transaction_that_is_still_running(cluster, clean):
    clean.catch_up()
    blocker = psycopg.connect(cluster.dsn("owner", "primary"))
    try:
        blocker.execute("INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char)"
                        " VALUES ('slow', 0, 'ORG', 'Slowco', 'slowco', 0, 6)")  # holds a change id, uncommitted
        insert(cluster, [("", "ORG", "Quickco", 1)])  # a later change id, committed
        with psycopg.connect(cluster.dsn("rollup", "primary"), autocommit=True) as conn:
            store = PgRollupStore(conn)
            assert store.try_lock(LOCK_KEY)
            worker = RollupWorker(store, Settings(rollup_grace_s=2.0), refresh_s=0.0, wait_limit_s=0.5)
            assert worker.cycle() is None  # waits for the open transaction, then gives up: no watermark
            blocker.commit()
            report = worker.cycle()
            assert report is not None and report.rows >= 2
        got, _ = answer(cluster, "1 hour", 5)
        cluster.wait_for_replay(clean.catch_up())
        got, _ = answer(cluster, "1 hour", 5)
        assert sorted((norm, n) for _, norm, n, _ in got) == [("quickco", 1), ("slowco", 1)]
    finally:
        blocker.close()


def test_rows_written_before_change_ids_existed_are_rolled_up_online(cluster, clean):
    insert(cluster, [("", "GPE", "Lisbon", 1800)] * 4, change_id_null=True)
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        conn.execute("UPDATE analytics.rollup_state SET history_before = now(),"
                     " history_floor = now() - interval '40 minutes'")
    cluster.wait_for_replay(clean.catch_up())
    for _ in range(10):  # history goes back 10 minutes per cycle
        clean.catch_up()
    cluster.wait_for_replay(clean.catch_up())
    got, _ = answer(cluster, "1 hour", 5)
    assert got == [("GPE", "lisbon", 4, 0)]
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        assert conn.execute("SELECT history_before FROM analytics.rollup_state").fetchone()[0] is None


class _PausingStore(PgRollupStore):
    """A store whose state() waits until ``go`` is set: another worker moves the state meanwhile."""

    def __init__(self, conn, read: threading.Event, go: threading.Event):
        super().__init__(conn)
        self.read, self.go = read, go

    def state(self):
        state = super().state()
        self.read.set()
        self.go.wait(10)
        return state


def test_a_worker_that_lost_the_race_changes_nothing(cluster, clean):
    clean.catch_up()
    insert(cluster, [("", "ORG", "Raced", 1)] * 2)
    read, go, failures = threading.Event(), threading.Event(), []
    with psycopg.connect(cluster.dsn("rollup", "primary"), autocommit=True) as conn:
        slow = RollupWorker(_PausingStore(conn, read, go), Settings(), refresh_s=0.0)

        def run_slow():
            try:
                slow.cycle()
            except RuntimeError as exc:
                failures.append(exc)

        thread = threading.Thread(target=run_slow)
        thread.start()
        assert read.wait(10)
        clean.catch_up()  # the other worker rolls the same rows up first
        go.set()
        thread.join(20)
    assert len(failures) == 1 and "another rollup worker" in str(failures[0])
    cluster.wait_for_replay(clean.catch_up())
    got, _ = answer(cluster, "1 hour", 5)
    assert got == [("ORG", "raced", 2, 0)]


def test_a_long_window_reads_hour_lists_and_covers_at_least_what_was_asked(cluster, clean):
    insert(cluster, [("", "ORG", "Early", 3 * 3600)] * 3 + [("", "ORG", "Late", 60)] * 2)
    cluster.wait_for_replay(clean.catch_up())
    for _ in range(5):
        clean.catch_up()  # finished hours are merged a few per cycle
    cluster.wait_for_replay(clean.catch_up())
    got, start = answer(cluster, "4 hours", 5)
    assert [(norm, n) for _, norm, n, _ in got] == [("early", 3), ("late", 2)]
    with psycopg.connect(cluster.dsn("analyst", "replica"), autocommit=True) as conn:
        end = conn.execute("SELECT max(window_end) FROM analytics.window_buckets('4 hours')").fetchone()[0]
        hours = conn.execute("SELECT count(*) FROM analytics.entity_top WHERE resolution = 'hour'").fetchone()[0]
    assert end - start >= timedelta(hours=4) and hours >= 1


def test_history_and_late_rows_older_than_the_minute_retention_keep_their_hour_exact(cluster, clean):
    driver = Rollups(cluster, Settings(rollup_grace_s=2.0, rollup_minute_retention_h=2))
    mid_hour = (time.time() // 3600 - 3) * 3600 + 1800  # the middle of the hour that began 3 hours ago
    try:
        insert(cluster, [("", "LOC", "Atlantis", time.time() - mid_hour)] * 3, change_id_null=True)
        with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
            conn.execute("UPDATE analytics.rollup_state SET history_before = now(),"
                         " history_floor = now() - interval '4 hours'")
        for _ in range(30):  # ten minutes of history per cycle
            driver.catch_up()
        driver.worker.maintain(datetime.now(UTC))  # minute lists older than 2 h go
        insert(cluster, [("", "LOC", "Atlantis", time.time() - mid_hour)])  # a late row in that old hour
        cluster.wait_for_replay(driver.catch_up())
    finally:
        driver.close()
    with psycopg.connect(cluster.dsn("analyst", "replica"), autocommit=True) as conn:
        hours = conn.execute("SELECT mentions, mentions_error FROM analytics.entity_top"
                             " WHERE resolution = 'hour' AND norm = 'atlantis'").fetchall()
    assert hours == [(4, 0)]


def brute_force_minute(cluster, bucket, k: int) -> tuple[dict, dict]:
    """The lists and totals of one minute straight from the raw rows, ranked in Python: ({(source, label):
    [(norm, text, mentions)]}, {(source, label): (mentions, unlisted_max, distinct)}); source '' = all."""
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        rows = conn.execute("SELECT coalesce(source, ''), label, norm, text, change_id FROM nlp.entities"
                            " WHERE processed_at >= %s AND processed_at < %s + interval '1 minute'",
                            (bucket, bucket)).fetchall()
    counts: dict[tuple[str, str], dict[str, list]] = {}
    for source, label, norm, text, change_id in rows:
        for group in {(source, label), ("", label)} if source else {("", label)}:
            entry = counts.setdefault(group, {}).setdefault(norm, [0, text, change_id])
            entry[0] += 1
            if change_id > entry[2]:
                entry[1:] = [text, change_id]
    lists, totals = {}, {}
    for group, by_norm in counts.items():
        ranked = sorted(by_norm.items(), key=lambda item: (-item[1][0], item[0]))
        lists[group] = [(norm, text, n) for norm, (n, text, _) in ranked[:k]]
        totals[group] = (sum(n for n, *_ in by_norm.values()), ranked[k][1][0] if len(ranked) > k else 0,
                         len(ranked))
    return lists, totals


def test_a_rebuilt_minute_equals_a_brute_force_count_of_its_raw_rows(cluster, clean):
    """Ties at the cut (broken by norm, code-point order), a group with fewer than K keys, the newest
    spelling, and a minute that is rebuilt after it was sealed."""
    k = 4
    driver = Rollups(cluster, Settings(rollup_top_k=k, rollup_grace_s=2.0))
    ago = 600 + time.time() % 60  # the first second of the minute that began ten minutes ago
    bucket = datetime.fromtimestamp((time.time() - ago) // 60 * 60, UTC)
    rows = ([("camp-a", "ORG", name, ago - 1) for name in ("Zeta", "Beta", "alpha", "Ärger", "Delta")] * 2
            + [("camp-b", "ORG", "Beta", ago - 2)] * 3 + [("camp-a", "ORG", "BETA", ago - 3)]
            + [(None, "ORG", "Omega", ago - 4)] + [("camp-b", "GPE", "Lisbon", ago - 5)] * 2)
    try:
        insert(cluster, rows)
        driver.catch_up()
        insert(cluster, [("camp-a", "ORG", "Delta", ago - 6), ("camp-b", "PERSON", "Ada", ago - 7)])  # late
        driver.catch_up()
    finally:
        driver.close()
    want_lists, want_totals = brute_force_minute(cluster, bucket, k)
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        top = conn.execute("SELECT source, label, norm, text, mentions, mentions_error FROM analytics.entity_top"
                           " WHERE resolution = 'minute' AND bucket = %s", (bucket,)).fetchall()
        totals = conn.execute("SELECT source, label, mentions, unlisted_max, distinct_entities"
                              " FROM analytics.entity_buckets WHERE resolution = 'minute' AND bucket = %s",
                              (bucket,)).fetchall()
    got_lists: dict[tuple[str, str], list] = {}
    for source, label, norm, text, mentions, error in top:
        assert error == 0
        got_lists.setdefault((source, label), []).append((norm, text, mentions))
    got_lists = {group: sorted(entries, key=lambda e: (-e[2], e[0])) for group, entries in got_lists.items()}
    assert got_lists == want_lists
    assert {(source, label): tuple(rest) for source, label, *rest in totals} == want_totals
    assert want_totals[("", "ORG")] == (16, 2, 6) and len(want_lists[("camp-b", "PERSON")]) == 1


def test_an_hour_list_equals_topk_merge_of_its_minute_lists(cluster, clean):
    """The hour merge runs in the database; topk.merge over the same minute lists is its reference (small
    lists, so errors, dropped keys and unlisted bounds all occur)."""
    k = 3
    driver = Rollups(cluster, Settings(rollup_top_k=k, rollup_grace_s=2.0))
    try:
        insert(cluster, zipf_rows(8_000, seed=13, minutes=150))
        for _ in range(3):
            driver.catch_up()
    finally:
        driver.close()
    with psycopg.connect(cluster.dsn("rollup", "primary"), autocommit=True) as conn:
        hours = [row[0] for row in conn.execute("SELECT DISTINCT bucket FROM analytics.entity_buckets"
                                                " WHERE resolution = 'hour' ORDER BY 1")]
        assert len(hours) >= 2
        store = PgRollupStore(conn)
        for hour in hours:
            want = {group: topk.merge(lists, 2 * k) for group, lists in store.minute_lists(hour, hour + HOUR).items()}
            got = {}
            for source, label, mentions, unlisted, distinct in conn.execute(
                    "SELECT source, label, mentions, unlisted_max, distinct_entities FROM analytics.entity_buckets"
                    " WHERE resolution = 'hour' AND bucket = %s", (hour,)):
                got[(source, label)] = topk.TopList([], mentions, unlisted, distinct)
            for source, label, norm, text, mentions, error in conn.execute(
                    "SELECT source, label, norm, text, mentions, mentions_error FROM analytics.entity_top"
                    " WHERE resolution = 'hour' AND bucket = %s ORDER BY mentions DESC, norm COLLATE \"C\"", (hour,)):
                got[(source, label)].entries.append(topk.Entry(norm, text, mentions, error))
            assert got == want
            assert any(top.unlisted_max > 0 for top in got.values())
            assert any(entry.error > 0 for top in got.values() for entry in top.entries)


def lists_at_rest(cluster, bucket) -> tuple[dict, dict]:
    """The minute's lists and totals as written, in brute_force_minute's shape."""
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        top = conn.execute("SELECT source, label, norm, text, mentions FROM analytics.entity_top"
                           " WHERE resolution = 'minute' AND bucket = %s AND mentions_error = 0"
                           " ORDER BY mentions DESC, norm COLLATE \"C\"", (bucket,)).fetchall()
        totals = conn.execute("SELECT source, label, mentions, unlisted_max, distinct_entities"
                              " FROM analytics.entity_buckets WHERE resolution = 'minute' AND bucket = %s",
                              (bucket,)).fetchall()
    lists: dict[tuple[str, str], list] = {}
    for source, label, norm, text, mentions in top:
        lists.setdefault((source, label), []).append((norm, text, mentions))
    return lists, {(source, label): tuple(rest) for source, label, *rest in totals}


def test_open_minutes_written_change_by_change_equal_a_brute_force_count(cluster, clean):
    """One worker across cycles writes only what changed in the open minutes' lists: entries that enter,
    leave, change count or spelling; the tables then hold what a full count gives."""
    steps = [[("camp-a", "ORG", "Acme", 1)] * 2 + [("camp-a", "ORG", "Beta", 1), ("camp-b", "GPE", "Rome", 1)],
             [("camp-a", "ORG", "Gamma", 1)] * 3,  # Gamma enters the top 2, Beta leaves it
             [("camp-a", "ORG", "ACME", 1)],  # a count and the spelling change
             [("camp-b", "ORG", "Beta", 1)] * 5 + [("camp-b", "GPE", "Rome", 1)]]
    with psycopg.connect(cluster.dsn("rollup", "primary"), autocommit=True) as conn:
        store = PgRollupStore(conn)
        assert store.try_lock(LOCK_KEY)
        try:
            worker = RollupWorker(store, Settings(rollup_top_k=2, rollup_grace_s=600.0), refresh_s=0.0)
            for rows in steps:
                insert(cluster, rows)
                assert worker.cycle() is not None
                assert worker.written
                with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as owner:
                    buckets = [row[0] for row in owner.execute(
                        "SELECT DISTINCT date_trunc('minute', processed_at, 'UTC') FROM nlp.entities")]
                for bucket in buckets:
                    assert lists_at_rest(cluster, bucket) == brute_force_minute(cluster, bucket, 2)
        finally:
            store.unlock(LOCK_KEY)
