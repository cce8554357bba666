"""EntityWriter without PostgreSQL: group commit, duplicates and conflicts, the race with another writer,
the one retry on a lost connection, isolating a poisoned request, and the 503s of an outage — against the
in-memory document store (functions/runtime/stores/memory.py), the fake at the store seam. tests/integration
runs the same writer over the PostgreSQL store against real servers."""

from __future__ import annotations

import hashlib

import psycopg
import psycopg.errors
import pytest

from functions.runtime.errors import Conflict, FunctionError, Unavailable
from functions.runtime.persistence import EntityWriter
from functions.runtime.shapes import DocumentRecord, Entity
from functions.runtime.stores.documents import normalize
from functions.runtime.stores.memory import InMemoryDocumentStore

MODEL = ("en_test", "1.0")


def record(document_id: str, text: str = "Tim Cook visited Berlin", entities=None, *, model=MODEL,
           metadata=None) -> DocumentRecord:
    if entities is None:
        entities = [Entity("Tim Cook", "PERSON", 0, 8), Entity("Berlin", "GPE", 17, 23)]
    return DocumentRecord(document_id=document_id, source="test", model_name=model[0], model_version=model[1],
                          text=text, text_sha256=hashlib.sha256(text.encode()).hexdigest(),
                          entities=entities, metadata=metadata, ner_ms=1.5)


@pytest.fixture
def database() -> InMemoryDocumentStore:
    return InMemoryDocumentStore()


def make_writer(store, **kwargs) -> EntityWriter:
    kwargs.setdefault("write_timeout", 5.0)
    return EntityWriter(store, **kwargs)


@pytest.fixture
def writer(database):
    writer = make_writer(database)
    writer.open()
    yield writer
    writer.close()


# -- storing -------------------------------------------------------------------------------------------

def test_a_write_stores_the_document_and_its_entities_and_returns_the_commit_lsn(writer, database):
    result = writer.write([record("r1", metadata={"lang": "en"})])
    assert result.commit_lsn == "0/1" and result.duplicates == set()
    document, entities = database.stored("r1")
    assert document["body"] == "Tim Cook visited Berlin" and document["entity_count"] == 2
    assert document["metadata"] == {"lang": "en"}
    assert entities == [("r1", 0, "PERSON", "Tim Cook", "tim cook", 0, 8), ("r1", 1, "GPE", "Berlin", "berlin", 17, 23)]


def test_every_write_is_one_transaction_of_its_own(writer, database):
    writer.write([record("r1")])
    writer.write([record("r2")])
    assert database.transactions == 2 and database.commits == 2


def test_store_text_false_keeps_only_length_and_hash():
    database = InMemoryDocumentStore(store_text=False)
    writer = make_writer(database)
    writer.open()
    try:
        writer.write([record("r1")])
    finally:
        writer.close()
    document, _ = database.stored("r1")
    assert document["body"] is None and document["text_length"] == len("Tim Cook visited Berlin")


def test_entity_norm_is_nfkc_casefolded_with_collapsed_spaces():
    assert normalize("  Ｚoë   MÜLLER ") == "zoë müller"


# -- idempotency -----------------------------------------------------------------------------------------

def test_the_same_id_and_content_again_is_a_duplicate_that_adds_no_rows(writer, database):
    writer.write([record("r1")])
    again = writer.write([record("r1")])
    assert again.duplicates == {"r1"}
    assert len(database.documents) == 1 and len(database.entities) == 2


def test_the_same_id_with_other_text_is_a_conflict_and_nothing_of_that_request_is_written(writer, database):
    writer.write([record("r1")])
    with pytest.raises(Conflict) as info:
        writer.write([record("r2", "Another text"), record("r1", "Different text")])
    assert info.value.status == 409 and info.value.code == "request_id_conflict"
    assert set(database.documents) == {"r1"}


def test_the_same_id_with_another_model_version_is_a_conflict(writer):
    writer.write([record("r1")])
    with pytest.raises(Conflict):
        writer.write([record("r1", model=("en_test", "2.0"))])


# -- group commit ----------------------------------------------------------------------------------------

def test_requests_queued_together_are_committed_in_one_transaction(database):
    writer = make_writer(database)
    futures = [writer.submit([record(f"g{i}")]) for i in range(5)]  # queued before the committer runs
    writer.open()
    try:
        results = [f.result(timeout=5) for f in futures]
    finally:
        writer.close()
    assert database.commits == 1
    assert len({r.commit_lsn for r in results}) == 1
    assert set(database.documents) == {f"g{i}" for i in range(5)}


def test_two_queued_requests_with_one_id_write_it_once_and_the_later_is_a_duplicate(database):
    writer = make_writer(database)
    first, second = writer.submit([record("same")]), writer.submit([record("same")])
    writer.open()
    try:
        assert first.result(timeout=5).duplicates == set()
        assert second.result(timeout=5).duplicates == {"same"}
    finally:
        writer.close()
    assert len(database.entities) == 2


def test_two_queued_requests_with_one_id_and_other_texts_conflict_only_the_later(database):
    writer = make_writer(database)
    first, second = writer.submit([record("same")]), writer.submit([record("same", "Other text")])
    writer.open()
    try:
        assert first.result(timeout=5).duplicates == set()
        with pytest.raises(Conflict):
            second.result(timeout=5)
    finally:
        writer.close()
    assert database.documents["same"]["body"] == "Tim Cook visited Berlin"


# -- races and failures ----------------------------------------------------------------------------------

def test_a_concurrent_writer_inserting_our_id_first_rolls_back_and_retries_as_duplicate(writer, database):
    stolen = record("raced")

    def other_writer(ids):
        database.before_insert = None  # only once
        database.commit_elsewhere("raced", stolen.fingerprint)

    database.before_insert = other_writer
    result = writer.write([stolen, record("fresh")])
    assert result.duplicates == {"raced"}
    assert database.rollbacks == 1 and database.commits == 1
    assert "fresh" in database.documents
    assert [e for e in database.entities if e[0] == "raced"] == []  # the other writer's rows, not ours


def test_a_race_on_every_attempt_gives_503_database_busy(writer, database):
    records = [record(f"busy{i}") for i in range(3)]

    def another_writer_wins_one_more_id(ids):  # each attempt, another of our ids is taken first
        stolen = next(r for r in records if r.document_id == ids[0])
        database.commit_elsewhere(stolen.document_id, stolen.fingerprint)

    database.before_insert = another_writer_wins_one_more_id
    with pytest.raises(Unavailable) as info:
        writer.write(records)
    assert info.value.code == "database_busy" and info.value.headers["Retry-After"] == "2"
    assert database.rollbacks == 3 and database.commits == 0


def test_a_connection_lost_during_the_commit_is_retried_once_and_stores_once(writer, database):
    database.fail_on["insert_entities"] = [psycopg.OperationalError("server closed the connection unexpectedly")]
    result = writer.write([record("r1")])
    assert result.commit_lsn is not None
    assert database.rollbacks == 1 and database.commits == 1
    assert len(database.entities) == 2


def test_a_connection_lost_twice_gives_503_database_unavailable(writer, database):
    database.fail_on["insert_documents"] = [psycopg.OperationalError("gone"), psycopg.OperationalError("gone")]
    with pytest.raises(Unavailable) as info:
        writer.write([record("r1")])
    assert info.value.status == 503 and info.value.code == "database_unavailable"
    assert database.documents == {}


def test_no_connection_gives_503_at_once_without_a_retry_and_marks_the_primary_down_until_it_answers(writer, database):
    database.unreachable = 1
    with pytest.raises(Unavailable) as info:
        writer.write([record("r1")])
    assert info.value.code == "database_unavailable"
    assert database.transactions == 1 and database.is_down()
    writer.write([record("r1")])  # the server is back
    assert database.transactions == 2 and not database.is_down()


def test_a_statement_timeout_is_retried_once_then_gives_503_database_timeout(writer, database):
    database.fail_on["existing_documents"] = [psycopg.errors.QueryCanceled("canceling statement due to "
                                                                            "statement timeout")] * 2
    with pytest.raises(Unavailable) as info:
        writer.write([record("r1")])
    assert info.value.code == "database_timeout"


def test_a_value_the_server_refuses_fails_only_its_own_request(database):
    def refuse_poison(records):
        if any("POISON" in r.text for r in records):
            raise psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence\nDETAIL: row")

    database.check_insert = refuse_poison
    writer = make_writer(database)
    good1, bad, good2 = (writer.submit([record("a")]), writer.submit([record("p", "POISON text")]),
                         writer.submit([record("b")]))
    writer.open()
    try:
        assert good1.result(timeout=5).duplicates == set()
        assert good2.result(timeout=5).duplicates == set()
        with pytest.raises(FunctionError) as info:
            bad.result(timeout=5)
    finally:
        writer.close()
    assert info.value.status == 500 and info.value.code == "internal_error"
    assert "DETAIL" not in info.value.message
    assert set(database.documents) == {"a", "b"}


def test_requests_queued_behind_a_failed_group_get_the_same_503_without_waiting(database):
    database.unreachable = 1
    writer = make_writer(database)
    big = writer.submit([record(f"big{i}") for i in range(2048)])  # fills a whole group on its own
    behind = writer.submit([record("behind")])
    writer.open()
    try:
        with pytest.raises(Unavailable):
            big.result(timeout=5)
        with pytest.raises(Unavailable) as info:
            behind.result(timeout=5)
    finally:
        writer.close()
    assert info.value.code == "database_unavailable"
    assert database.transactions == 1  # the queued request did not wait for a connection itself


def test_a_write_not_confirmed_in_time_gives_503_database_timeout(database):
    writer = make_writer(database, write_timeout=0.05)  # never opened: nothing commits
    with pytest.raises(Unavailable) as info:
        writer.write([record("r1")])
    assert info.value.code == "database_timeout"


def test_a_closed_writer_refuses_work_with_503_shutting_down(database):
    writer = make_writer(database)
    writer.open()
    writer.close()
    assert database.closed
    with pytest.raises(Unavailable) as info:
        writer.submit([record("late")])
    assert info.value.code == "shutting_down"


def test_a_lost_lsn_after_commit_still_acknowledges_the_write(writer, database):
    database.fail_on["commit_lsn"] = [psycopg.OperationalError("gone after commit")]
    result = writer.write([record("r1")])
    assert result.commit_lsn is None and "r1" in database.documents


# -- readiness --------------------------------------------------------------------------------------------

def test_ready_while_the_store_answers(writer, database):
    assert writer.ready() is True


def test_not_ready_when_no_connection_can_be_had(writer, database):
    database.unreachable = 1
    assert writer.ready() is False
