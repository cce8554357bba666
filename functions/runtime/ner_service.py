"""The ner-processor service: validate a request, recognise entities, persist them, build the answer.

Created once per process by the handler module (``app.create(build)``); it owns the model worker and the
writer pool and names their readiness checks (``model``, ``database``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from functions.runtime import app, credentials, logs, request_context
from functions.runtime.db import make_pool
from functions.runtime.errors import InvalidField, MethodNotAllowed, PayloadTooLarge, Timeout, Unavailable
from functions.runtime.http import contains_nul, decode_body
from functions.runtime.model_process import ModelProcess
from functions.runtime.persistence import EntityWriter
from functions.runtime.recognizer import Recognizer
from functions.runtime.request_context import RequestContext, validate_id
from functions.runtime.settings import Settings
from functions.runtime.shapes import DocumentRecord, Entity
from functions.runtime.stores.documents import PgDocumentStore

log = logging.getLogger(__name__)

ALLOWED_METHODS = "POST"


WRITER_SECRET = credentials.SECRETS["ner-writer-dsn"].name


@dataclass(frozen=True)
class Document:
    """One comment to recognise and store; ``document_id`` is its idempotency key."""

    document_id: str
    text: str
    source: str | None = None
    metadata: dict | None = None


@dataclass(frozen=True)
class NerRequest:
    request_id: str
    documents: tuple[Document, ...]
    batch: bool


class NerService(app.Service):
    """Owns the recogniser (the model process) and the writer; :meth:`process` is safe to call from many
    threads."""

    def __init__(self, settings: Settings, engine: Recognizer, writer: EntityWriter | None):
        super().__init__(settings)
        self.engine = engine
        self.writer = writer
        self.model = engine.info.as_dict()

    # -- parse ------------------------------------------------------------------------------------

    def parse(self, event) -> NerRequest:
        """Turn an HTTP event into a request. Raises the 4xx project errors documented in
        docs/operations.md; the request's context holds the request id from here on."""
        ctx = request_context.for_headers(event.headers)
        if event.method != "POST":
            raise MethodNotAllowed(f"method {event.method} is not allowed; use POST", allow=ALLOWED_METHODS)
        kind, payload = decode_body(event, max_bytes=self.settings.max_body_bytes)
        if kind == "text":
            text = self._check_text(payload, "body")
            return NerRequest(ctx.request_id, (Document(ctx.request_id, text),), batch=False)
        if not isinstance(payload, dict):
            raise InvalidField("body", "the JSON body must be an object with 'text' or 'documents'")
        rid = ctx.adopt(payload.get("request_id"))
        if "documents" in payload:
            return self._parse_batch(payload, ctx)
        text = self._check_text(payload.get("text"), "text", present="text" in payload)
        source = self._optional_str(payload.get("source"), "source")
        metadata = self._optional_object(payload.get("metadata"), "metadata")
        return NerRequest(rid, (Document(rid, text, source, metadata),), batch=False)

    def _parse_batch(self, payload: dict, ctx: RequestContext) -> NerRequest:
        items = payload["documents"]
        if not isinstance(items, list) or not items:
            raise InvalidField("documents", "'documents' must be a non-empty array of objects")
        if len(items) > self.settings.max_batch_docs:
            raise PayloadTooLarge(f"'documents' has {len(items)} items; the limit is "
                                  f"{self.settings.max_batch_docs}", code="too_many_documents")
        default_source = self._optional_str(payload.get("source"), "source")
        documents: list[Document] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"documents[{index}]"
            if not isinstance(item, dict):
                raise InvalidField(where, f"'{where}' must be an object with 'text'")
            document_id = f"{ctx.request_id}:{index}"
            if item.get("id") is not None:
                document_id = validate_id(item["id"], f"{where}.id")
            if document_id in seen:
                raise InvalidField(f"{where}.id", f"'{where}.id' repeats the id {document_id!r}")
            seen.add(document_id)
            text = self._check_text(item.get("text"), f"{where}.text", present="text" in item)
            source = self._optional_str(item.get("source"), f"{where}.source") or default_source
            metadata = self._optional_object(item.get("metadata"), f"{where}.metadata")
            documents.append(Document(document_id, text, source, metadata))
        return NerRequest(ctx.request_id, tuple(documents), batch=True)

    def _check_text(self, value: Any, field: str, present: bool = True) -> str:
        if not present or value is None:
            raise InvalidField(field, f"'{field}' is required", code="missing_field")
        if not isinstance(value, str):
            raise InvalidField(field, f"'{field}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise InvalidField(field, f"'{field}' must not be empty or whitespace only", code="empty_text")
        if len(value) > self.settings.max_text_chars:
            raise PayloadTooLarge(f"'{field}' has {len(value)} characters; the limit is "
                                  f"{self.settings.max_text_chars}", code="text_too_long")
        if "\x00" in value:
            raise InvalidField(field, f"'{field}' must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # JSON "\ud800" escapes decode to lone surrogates
            raise InvalidField(field, f"'{field}' contains an unpaired surrogate (invalid Unicode)") from None
        return value

    @staticmethod
    def _optional_str(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
            raise InvalidField(field, f"'{field}' must be a string of at most 200 characters")
        return value

    @staticmethod
    def _optional_object(value: Any, field: str) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidField(field, f"'{field}' must be a JSON object")
        if contains_nul(value):  # decoded values only: an escaped backslash before "u0000" is fine
            raise InvalidField(field, f"'{field}' must not contain NUL characters")
        return value

    # -- process ----------------------------------------------------------------------------------

    def process(self, request: NerRequest) -> dict:
        """Recognise and persist; returns the response dict.

        Raises Overloaded (429), Timeout (504), Unavailable (503), Conflict (409).
        """
        fields = request_context.log_fields()
        texts = [doc.text for doc in request.documents]
        fields.update(document_count=len(texts), text_length=sum(map(len, texts)))
        started = time.perf_counter()
        try:
            entities = self.engine.recognize(texts, request_id=request.request_id,
                                             timeout=self.settings.request_timeout_s)
        except TimeoutError:
            raise Timeout("entity recognition did not finish in time") from None
        ner_ms = (time.perf_counter() - started) * 1000.0
        counts = Counter(entity.label for doc_entities in entities for entity in doc_entities)
        fields.update(ner_ms=round(ner_ms, 3), entity_count=sum(counts.values()),
                      entities_by_label=dict(counts), batch_size=len(texts))

        if self.writer is None:
            raise Unavailable("no database is configured", code="database_unavailable",
                              retry_after=self.settings.retry_after_s)
        records = [DocumentRecord(
            document_id=doc.document_id, source=doc.source, model_name=self.model["name"],
            model_version=self.model["version"], text=doc.text,
            text_sha256=hashlib.sha256(doc.text.encode("utf-8")).hexdigest(),
            entities=doc_entities, metadata=doc.metadata, ner_ms=ner_ms / len(texts))
            for doc, doc_entities in zip(request.documents, entities, strict=True)]
        result = self.writer.write(records)
        fields["db_ms"] = round(result.db_ms, 3)
        if result.duplicates:
            fields["duplicate_count"] = len(result.duplicates)
        return self._body(request, entities, result.commit_lsn, result.duplicates)

    def _body(self, request: NerRequest, entities: list[list[Entity]], commit_lsn: str | None,
              duplicates: set[str]) -> dict:
        def as_dicts(doc_entities: list[Entity]) -> list[dict]:
            return [entity._asdict() for entity in doc_entities]

        if not request.batch:
            doc = request.documents[0]
            return {"request_id": request.request_id, "entities": as_dicts(entities[0]), "model": self.model,
                    "persisted": True, "duplicate": doc.document_id in duplicates, "commit_lsn": commit_lsn}
        return {
            "request_id": request.request_id,
            "documents": [{"id": doc.document_id, "entities": as_dicts(doc_entities), "persisted": True,
                           "duplicate": doc.document_id in duplicates}
                          for doc, doc_entities in zip(request.documents, entities, strict=True)],
            "model": self.model, "persisted": True, "commit_lsn": commit_lsn,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.writer is not None and self.writer.ready()

    def ready_checks(self) -> Mapping[str, Callable[[], bool]]:
        # The model is loaded and accepting work (false while a crashed model process restarts).
        return {"model": self.engine.ready, "database": self.ready}

    def close(self) -> None:
        self.engine.close()
        if self.writer is not None:
            self.writer.close()


def build(settings: Settings) -> NerService:
    """Start the model process and wait until it has loaded the model (logged as ``model.loaded``), then
    open the writer pool without waiting. Raises ModelLoadError when the model cannot be loaded."""
    engine = ModelProcess(settings).start()
    logs.set_static_fields(model_name=engine.info.name, model_version=engine.info.version)
    log.info("model loaded", extra={"event": "model.loaded", "load_ms": round(engine.load_ms, 1),
                                    "pipeline": list(engine.info.pipeline), "model_pid": engine.pid})
    writer = None
    dsn = settings.secret(WRITER_SECRET)
    if dsn:
        store = PgDocumentStore.over_pool(make_pool(dsn, name="ner-writer", **settings.pool_options()),
                                          statement_timeout_ms=settings.db_statement_timeout_ms,
                                          store_text=settings.store_text)
        writer = EntityWriter(store, retry_after=settings.retry_after_s, write_timeout=settings.request_timeout_s,
                              commit_delay_s=settings.db_commit_delay_us / 1e6)
        writer.open()
    else:
        log.warning(f"secret {WRITER_SECRET} is not set: requests will get 503",
                    extra={"event": "db.not_configured"})
    return NerService(settings, engine, writer)
