"""Property-based fuzzing (hypothesis) over HTTP against ONE real ner-processor process.

Well over 10,000 generated requests in total: random bytes under random content types, invalid UTF-8,
JSON of every shape and type, nasty-but-valid texts (SQL injection, control characters, emoji, RTL,
1-char, whitespace-only), bodies and texts at and over the limits, deep and huge JSON, random methods,
paths and headers. For every response: status < 500, the process still runs, 4xx bodies are JSON with
an ``error`` code. Valid nasty texts are read back from nlp.documents/nlp.entities as admin: stored
verbatim, entities equal to the response.

The process runs with small limits (MAX_TEXT_CHARS=2000, MAX_BODY_BYTES=256 KiB, MAX_BATCH_DOCS=16)
so that "at and over the limit" is cheap. hypothesis runs derandomized (same examples on every run).
Two input classes that currently give 500s (non-finite numbers and lone surrogates outside ``text``)
are pinned by the explicit regression tests at the end instead of being left to the random search, so
that one known bug cannot hide everything else the strategies would find.
"""

from __future__ import annotations

import json
import socket
import string
import threading
import time
import uuid
from collections import Counter
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.processes import start_function
from tests.faults.support import Http, Load, entity_tuples, report, status_counts, stored

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

MAX_TEXT = 2000
MAX_BODY = 256 * 1024
MAX_DOCS = 16
READY_PATH = "/_/ready"


def fuzz_settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


class Fuzzer:
    """The one process under fuzz, a keep-alive client and the running totals."""

    def __init__(self, fn):
        self.fn = fn
        self.client = Http(fn.port, timeout=30)
        self.per_strategy: Counter = Counter()
        self.statuses: Counter = Counter()
        self.server_errors: list = []
        self.strategies_run: set[str] = set()
        self._ids = (f"fz-{uuid.uuid4().hex[:6]}-{i}" for i in range(10**9))

    def new_id(self) -> str:
        return next(self._ids)

    def send(self, strategy: str, method: str = "POST", path: str = "/", body: bytes | str | None = b"",
             content_type: str | None = "application/json", headers: dict | None = None):
        self.per_strategy[strategy] += 1
        try:
            reply = self.client.request(method, path, body=body, content_type=content_type, headers=headers)
        except (ConnectionError, OSError) as exc:
            raise AssertionError(f"no response ({type(exc).__name__}: {exc}); process exit code "
                                 f"{self.fn.process.poll()}") from exc
        self.statuses[reply.status] += 1
        if reply.status >= 500:
            self.server_errors.append((strategy, reply.status, reply.body[:300]))
        assert self.fn.process.poll() is None, "the function process crashed"
        assert reply.status < 500, f"{reply.status}: {reply.body[:500]!r}"
        if method != "HEAD":
            assert reply.is_json, f"{reply.status} with Content-Type {reply.headers.get('content-type')}"
            payload = reply.json
            if reply.status >= 400:
                assert isinstance(payload.get("error"), str) and payload["error"], payload
        return reply


@pytest.fixture(scope="module")
def fuzz(pg_cluster, tmp_path_factory):
    status = pg_cluster.status()
    if not all(status[s]["running"] for s in ("primary", "replica")):
        pg_cluster.start()
    fn = start_function("ner-processor", tmp_path_factory.mktemp("fuzz"), secrets_dir=pg_cluster.secrets_dir,
                        MAX_TEXT_CHARS=str(MAX_TEXT), MAX_BODY_BYTES=str(MAX_BODY),
                        MAX_BATCH_DOCS=str(MAX_DOCS))
    fuzzer = Fuzzer(fn)
    yield fuzzer
    fuzzer.client.close()
    fn.stop()


# -- strategies ------------------------------------------------------------------------------------

CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                 "text/plain", "text/plain; charset=utf-8", "text/plain; charset=latin-1",
                 "application/x-www-form-urlencoded", "application/vnd.api+json", "application/xml",
                 "multipart/form-data; boundary=x", "text/html", "application/octet-stream", "", "*/*",
                 "image/png", "application/json;", "text/csv"]

SQL_INJECTION = [
    "'; DROP TABLE nlp.entities; --", "Robert'); DROP TABLE students;-- at Apple", "1' OR '1'='1",
    "' UNION SELECT usename, passwd FROM pg_shadow --", "$$; SELECT pg_sleep(10); $$",
    "'); COPY nlp.documents TO PROGRAM 'id'; --", "%s %(text)s {0} %n %x", "E'\\\\x41' || chr(0)",
    "\\'; TRUNCATE nlp.documents CASCADE; --", "admin'--", "\" OR \"\"=\"", "1; SELECT * FROM nlp.documents",
]
EMOJI = ["👍🏽 Great service from Apple 🍎🔥", "👨‍👩‍👧‍👦 family trip to Paris with Delta ✈️",
         "🇩🇪 Berlin 🇫🇷 Paris 🇯🇵 Tokyo", "😀", "🏳️‍🌈", "𝕬𝖕𝖕𝖑𝖊 𝖎𝖓 𝕻𝖆𝖗𝖎𝖘", "I ❤️ Microsoft"]
RTL = ["شكرا لخدمة أمازون في دبي", "שלום מתל אביב, Apple", "\u202eevil\u202c Apple in Paris",
       "Apple في دبي on Monday", "\u200fRTL mark Siemens\u200e", "مرحبا"]
CONTROL = ["tab\there Apple", "bell\x07 Amazon in Seattle", "\x1b[31mred\x1b[0m Microsoft",
           "\x01\x02\x03 Lidl", "line\u2028sep\u2029para Google", "windows\r\nline Tim Cook",
           "\x7f del Siemens", "\x0b\x0c vt ff Apple", "Ap\u200bple zero width", "\ufeffBOM Amazon",
           "Z\u0337a\u0337l\u0337g\u0337o\u0337 A\u0337p\u0337p\u0337l\u0337e\u0337",
           "\x1f\x1e\x1d\x1c unit seps Paris"]
ONE_CHAR = ["a", "'", "😀", "\u05d0", ";", "\\", "\"", "0", "é"]
WHITESPACE = [" ", "\t\n", "\u3000", "\u00a0", "\r\n\r\n", "\u2003 \u2009", "\x1c\x1d"]
NASTY = SQL_INJECTION + EMOJI + RTL + CONTROL + ONE_CHAR + WHITESPACE

safe_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
nasty_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(safe_chars, min_size=1, max_size=200),
    st.lists(st.sampled_from(NASTY) | st.text(safe_chars, max_size=20), min_size=1, max_size=6).map("".join),
).map(lambda s: s[:MAX_TEXT])

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=40) | st.sampled_from(NASTY))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
keys = st.sampled_from(["text", "documents", "request_id", "source", "metadata", "id"]) | st.text(max_size=8)
json_bodies = st.one_of(
    json_values,
    st.dictionaries(keys, json_values, max_size=6),
    st.fixed_dictionaries({"text": json_values}),
    st.fixed_dictionaries({"text": nasty_text}, optional={"request_id": json_values, "source": json_values,
                                                          "metadata": json_values}),
    st.fixed_dictionaries({"documents": st.lists(st.dictionaries(keys, json_values, max_size=4) | json_values,
                                                 max_size=5)}, optional={"request_id": json_values}),
    st.fixed_dictionaries({"documents": json_values}),
)

INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80",
                b"\xc3", b"\xf8\x88\x80\x80\x80", b"\xef\xbf"]


# -- the strategies, one test each -----------------------------------------------------------------

def test_random_bytes_under_random_content_types(fuzz):
    @fuzz_settings(5000)
    @given(body=st.binary(max_size=2048), content_type=st.sampled_from(CONTENT_TYPES))
    def run(body, content_type):
        fuzz.send("random_bytes", body=body, content_type=content_type)

    run()
    fuzz.strategies_run.add("random_bytes")


def test_invalid_utf8_is_a_400_invalid_utf8(fuzz):
    @fuzz_settings(1000)
    @given(text=nasty_text, bad=st.sampled_from(INVALID_UTF8), where=st.floats(0, 1),
           as_json=st.booleans())
    def run(text, bad, where, as_json):
        raw = json.dumps({"text": text}, ensure_ascii=False).encode() if as_json else text.encode()
        cut = int(len(raw) * where)
        reply = fuzz.send("invalid_utf8", body=raw[:cut] + bad + raw[cut:],
                          content_type="application/json" if as_json else "text/plain")
        assert reply.status == 400 and reply.json["error"] == "invalid_utf8", reply.body

    run()
    fuzz.strategies_run.add("invalid_utf8")


def test_json_of_wrong_shapes_types_and_nulls(fuzz):
    @fuzz_settings(3000)
    @given(body=json_bodies, ascii_only=st.booleans())
    def run(body, ascii_only):
        fuzz.send("json_shapes", body=json.dumps(body, ensure_ascii=ascii_only))

    run()
    fuzz.strategies_run.add("json_shapes")


def test_nasty_valid_texts_are_stored_verbatim_with_the_answered_entities(fuzz, admin_dsn):
    accepted: dict[str, tuple[str, list]] = {}
    rejected_blank = Counter()

    @fuzz_settings(2000)
    @given(text=nasty_text, mode=st.sampled_from(["json", "json_ascii", "text/plain", "batch"]))
    def run(text, mode):
        rid = fuzz.new_id()
        # A leading U+FEFF of a text/plain body is its byte-order mark: not part of the text.
        sent = text.removeprefix("\ufeff") if mode == "text/plain" else text
        if mode == "text/plain":
            reply = fuzz.send("nasty_texts", body=text, content_type="text/plain", headers={"X-Call-Id": rid})
        elif mode == "batch":
            reply = fuzz.send("nasty_texts", body=json.dumps({"documents": [
                {"id": rid, "text": text}, {"id": rid + ".b", "text": "Tim Cook of Apple in Paris."}]}))
        else:
            reply = fuzz.send("nasty_texts", body=json.dumps({"text": text, "request_id": rid},
                                                               ensure_ascii=mode == "json_ascii"))
        if not sent.strip():
            assert reply.status == 422 and reply.json["error"] == "empty_text", reply.body
            rejected_blank[mode] += 1
            return
        assert reply.status == 200, reply.body
        body = reply.json
        entities = body["documents"][0]["entities"] if mode == "batch" else body["entities"]
        accepted[rid] = (sent, entity_tuples(entities))

    run()
    for text in NASTY:  # every fixed nasty string once, whatever the generator picked
        run.hypothesis.inner_test(text=text, mode="json")
    rows = stored(admin_dsn, list(accepted))
    mismatched = [rid for rid, (text, ents) in accepted.items()
                  if rid not in rows or rows[rid]["body"] != text or rows[rid]["entities"] != ents
                  or rows[rid]["entity_count"] != len(ents)]
    fuzz.strategies_run.add("nasty_texts")
    report("fuzz_nasty_texts_verbatim", accepted=len(accepted),
           read_back_equal=len(accepted) - len(mismatched), mismatched=len(mismatched),
           whitespace_only_rejected=sum(rejected_blank.values()))
    assert not mismatched, [(rid, accepted[rid][0], rows.get(rid)) for rid in mismatched[:5]]
    # The fixed lists must all have been exercised as valid, stored comments.
    stored_texts = {text for text, _ in accepted.values()}
    assert set(SQL_INJECTION + EMOJI + RTL + CONTROL + ONE_CHAR) <= stored_texts


def _limit_case(case: str, fill: str, rid: str) -> tuple[bytes, str, int, str | None]:
    """(body, content type, expected status, expected error code) for one boundary case."""
    def text_of(n: int) -> str:
        return (fill * n)[:n]

    single = lambda text, **extra: json.dumps({"text": text, "request_id": rid, **extra}, ensure_ascii=False)  # noqa: E731
    if case == "text_at_limit":
        return single(text_of(MAX_TEXT)).encode(), "application/json", 200, None
    if case == "text_over_limit":
        return single(text_of(MAX_TEXT + 1)).encode(), "application/json", 413, "text_too_long"
    if case == "plain_at_limit":
        return text_of(MAX_TEXT).encode(), "text/plain", 200, None
    if case == "plain_over_limit":
        return text_of(MAX_TEXT + 1).encode(), "text/plain", 413, "text_too_long"
    if case in ("body_at_limit", "body_over_limit"):
        skeleton = json.dumps({"text": "Tim Cook of Apple", "request_id": rid, "metadata": {"pad": ""}})
        pad = MAX_BODY - len(skeleton.encode()) + (case == "body_over_limit")
        body = skeleton.replace('"pad": ""', '"pad": "' + "x" * pad + '"').encode()
        assert len(body) == MAX_BODY + (case == "body_over_limit")
        return body, "application/json", 200 if case == "body_at_limit" else 413, \
            None if case == "body_at_limit" else "payload_too_large"
    if case in ("docs_at_limit", "docs_over_limit"):
        n = MAX_DOCS + (case == "docs_over_limit")
        docs = [{"id": f"{rid}.{i}", "text": f"{fill} {i} Apple"} for i in range(n)]
        body = json.dumps({"documents": docs})
        return body.encode(), "application/json", 200 if n == MAX_DOCS else 413, \
            None if n == MAX_DOCS else "too_many_documents"
    if case in ("id_at_limit", "id_over_limit"):
        long_id = (rid + "-" + "i" * 200)[:128 + (case == "id_over_limit")]
        body = json.dumps({"text": "Apple in Paris", "request_id": long_id}).encode()
        return body, "application/json", 200 if case == "id_at_limit" else 422, \
            None if case == "id_at_limit" else "invalid_field"
    if case in ("source_at_limit", "source_over_limit"):
        source = text_of(200 + (case == "source_over_limit")).replace("\x00", "x")
        return single("Apple in Paris", source=source).encode(), "application/json", \
            200 if case == "source_at_limit" else 422, None if case == "source_at_limit" else "invalid_field"
    if case == "giant_body":
        return single(text_of(1_000_000)).encode(), "application/json", 413, "payload_too_large"
    raise AssertionError(case)


LIMIT_CASES = ["text_at_limit", "text_over_limit", "plain_at_limit", "plain_over_limit", "body_at_limit",
               "body_over_limit", "docs_at_limit", "docs_over_limit", "id_at_limit", "id_over_limit",
               "source_at_limit", "source_over_limit", "giant_body"]


def test_bodies_texts_batches_and_ids_at_and_over_the_limits(fuzz):
    @fuzz_settings(300)
    @given(case=st.sampled_from(LIMIT_CASES), fill=st.sampled_from(["a", "é", "😀", "Apple ", "ش", "\t"]))
    def run(case, fill):
        body, content_type, status, code = _limit_case(case, fill, fuzz.new_id())
        if case in ("text_at_limit", "text_over_limit", "plain_at_limit", "plain_over_limit") \
                and not fill.strip():
            status, code = 422, "empty_text"  # a text of tabs only is blank (checked before its length)
        reply = fuzz.send("limits", body=body, content_type=content_type)
        assert reply.status == status, (case, fill, reply.status, reply.body[:300])
        if code:
            assert reply.json["error"] == code, (case, reply.body[:300])

    run()
    fuzz.strategies_run.add("limits")


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def test_deep_and_huge_json(fuzz):
    @fuzz_settings(200)
    @given(depth=st.sampled_from([1, 2, 10, 100, 500, 900, 950, 990, 1000, 1001, 5000, 100_000]),
           kind=st.sampled_from(["list", "dict"]),
           where=st.sampled_from(["top", "text", "metadata", "documents", "request_id", "source",
                                  "doc_metadata"]),
           width=st.sampled_from([0, 10, 1000, 20_000]))
    def run(depth, kind, where, width):
        deep = _nested(depth, kind)
        rid = json.dumps(fuzz.new_id())
        bodies = {
            "top": deep,
            "text": '{"text":' + deep + "}",
            "metadata": '{"text":"Apple in Paris","request_id":' + rid + ',"metadata":{"x":' + deep + "}}",
            "documents": '{"documents":' + deep + "}",
            "request_id": '{"text":"Apple","request_id":' + deep + "}",
            "source": '{"text":"Apple","source":' + deep + "}",
            "doc_metadata": ('{"request_id":' + rid + ',"documents":[{"text":"Apple","metadata":'
                             + deep + "}]}"),
        }
        fuzz.send("deep_json", body=bodies[where])
        if width:  # huge but flat: many documents, many metadata keys
            wide_docs = '{"documents":[' + ",".join(['{"text":"a"}'] * width) + "]}"
            wide_meta = json.dumps({"text": "Apple", "request_id": fuzz.new_id(),
                                    "metadata": {f"k{i}": i for i in range(width)}})
            fuzz.send("deep_json", body=wide_docs)
            fuzz.send("deep_json", body=wide_meta)

    run()
    fuzz.strategies_run.add("deep_json")


header_text = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=140)


def test_random_methods_paths_content_types_and_headers(fuzz):
    @fuzz_settings(2500)
    @given(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "POST",
                                   "BREW"])
           | st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=12),
           path=st.sampled_from(["/", "/function/ner-processor", "/x/y?z=1", "/%00", "/../../etc/passwd",
                                 "/?text=Apple", "/" + "a" * 5000])
           | st.text(max_size=60).map(lambda s: "/" + quote(s, safe="/?=&")),
           content_type=st.sampled_from(CONTENT_TYPES) | header_text,
           call_id=st.none() | header_text,
           body=st.sampled_from([b"", b'{"text":"Apple in Paris"}', b"Apple in Paris", b"[1,2]", b"null"])
           | st.binary(max_size=100))
    def run(method, path, content_type, call_id, body):
        if path.split("?")[0] == READY_PATH:
            return
        headers = {"X-Call-Id": call_id} if call_id is not None else {}
        reply = fuzz.send("methods_headers", method=method, path=path, body=body,
                          content_type=content_type or None, headers=headers)
        if method != "POST":
            # A method outside the HTTP parser's table (BREW) is refused before the handler: 400.
            assert (reply.status == 405 and reply.headers.get("allow") == "POST") or (
                reply.status == 400 and reply.json["error"] == "unknown_method"), (method, reply.status)

    run()
    fuzz.strategies_run.add("methods_headers")


ALL_STRATEGIES = {"random_bytes", "invalid_utf8", "json_shapes", "nasty_texts", "limits", "deep_json",
                  "methods_headers"}


def test_fuzz_totals_no_5xx_no_crash_and_json_logs(fuzz):
    """Runs after the strategies (file order): the figures of the whole fuzz run."""
    lines = fuzz.fn.raw_log().splitlines()
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    total = sum(fuzz.per_strategy.values())
    report("fuzz", total_requests=total, per_strategy=dict(fuzz.per_strategy),
           statuses=dict(sorted(fuzz.statuses.items())),
           status_5xx=sum(n for s, n in fuzz.statuses.items() if s >= 500),
           process_alive=fuzz.fn.process.poll() is None, log_lines=len(lines),
           non_json_log_lines=len(not_json))
    assert fuzz.fn.process.poll() is None
    assert not fuzz.server_errors, fuzz.server_errors[:5]
    assert not not_json, not_json[:10]
    if fuzz.strategies_run >= ALL_STRATEGIES:
        assert total >= 10_000, f"only {total} fuzz requests"


# -- pinned regressions (found by fuzzing; they answer 500 today) -----------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]


def test_non_finite_numbers_in_metadata_are_rejected_not_a_500(fuzz):
    """Python's json accepts NaN/Infinity (and 1e400 overflows to inf); PostgreSQL's jsonb does not."""
    answers = {}
    for number in NON_FINITE:
        body = ('{"text": "Tim Cook of Apple", "request_id": "' + fuzz.new_id()
                + '", "metadata": {"score": ' + number + "}}")
        answers[number] = fuzz.client.request("POST", body=body).status
    assert all(status in (400, 422) for status in answers.values()), answers


LONE_SURROGATES = {
    "source": r'{"text": "Apple in Paris", "source": "\ud800"}',
    "metadata-value": r'{"text": "Apple in Paris", "metadata": {"k": "\udfff tail"}}',
    "metadata-key": r'{"text": "Apple in Paris", "metadata": {"\ud83d": 1}}',
    "batch-source": r'{"documents": [{"text": "Apple in Paris", "source": "x\udc00"}]}',
    "batch-metadata": r'{"documents": [{"text": "Apple in Paris", "metadata": {"a": ["\ud800"]}}]}',
}


def test_lone_surrogates_outside_text_are_rejected_not_a_500(fuzz):
    """JSON escapes like \\ud800 decode to strings UTF-8 cannot encode; ``text`` is checked, the other
    fields are not."""
    answers = {name: fuzz.client.request("POST", body=body).status for name, body in LONE_SURROGATES.items()}
    assert all(status in (400, 422) for status in answers.values()), answers


def test_one_poisoned_request_does_not_fail_the_requests_committed_with_it(function_factory, healthy):
    """Group commit writes concurrent requests in one transaction: a request whose value the database
    (or the driver) refuses must fail alone, never its innocent neighbours."""
    fn = function_factory("ner-processor")
    load = Load(fn.port, clients=8).start()
    poison = Http(fn.port)
    poison_statuses = []
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 30, 20)
        for i in range(40):
            poisoned = r'"source": "\ud800"' if i % 2 else r'"metadata": {"x": NaN}'
            body = '{"text": "Apple in Paris ' + str(i) + '", ' + poisoned + "}"
            poison_statuses.append(poison.request("POST", body=body).status)
            time.sleep(0.02)
    finally:
        innocent = load.stop()
        poison.close()
    report("poisoned_group_commit", innocent_sent=len(innocent), innocent_statuses=status_counts(innocent),
           poison_statuses=dict(Counter(poison_statuses)))
    assert all(o.ok for o in innocent), \
        f"innocent requests failed with a poisoned neighbour: {status_counts(innocent)}"


# -- raw HTTP framing ----------------------------------------------------------------------------

def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                              if k.strip().lower() == b"content-length"]
                    if length and len(rest) >= length[0]:
                        break
        except TimeoutError:
            pass
    return b"".join(chunks)


_POST = b"POST / HTTP/1.1\r\nHost: x\r\n"
_CHUNKED = _POST + b"Transfer-Encoding: chunked\r\n\r\n"
FRAMING = {
    "negative-content-length": _POST + b"Content-Type: text/plain\r\nContent-Length: -1\r\n\r\n",
    "junk-content-length": _POST + b"Content-Length: ten\r\n\r\nApple",
    "junk-chunk-size": _CHUNKED + b"zz\r\nApple\r\n0\r\n\r\n",
    "negative-chunk-size": _CHUNKED + b"-5\r\nApple\r\n0\r\n\r\n",
    "huge-chunk-size": _CHUNKED + b"ffffffffff\r\nApple\r\n",
    "bad-request-line": b"GARBAGE\r\n\r\n",
}


@pytest.fixture(scope="module")
def framing_fn(pg_cluster, tmp_path_factory):
    # A chunk size the body never fulfils is answered when the body stalls (408): sooner than _raw gives up.
    fn = start_function("ner-processor", tmp_path_factory.mktemp("framing"),
                        secrets_dir=pg_cluster.secrets_dir, BODY_READ_TIMEOUT_S="2")
    yield fn
    fn.stop()


@pytest.mark.parametrize("name", list(FRAMING))
def test_malformed_http_framing_gets_a_json_4xx_and_logs_stay_json(framing_fn, name):
    fn = framing_fn
    log_before = len(fn.raw_log().splitlines())
    response = _raw(fn.port, FRAMING[name])
    time.sleep(0.2)
    not_json = [line for line in fn.raw_log().splitlines()[log_before:] if not line.startswith("{")]
    assert fn.process.poll() is None
    head, _, body = response.partition(b"\r\n\r\n")
    assert body.startswith(b"{") and "error" in json.loads(body), f"no JSON error: {response[:300]!r}"
    if head.startswith(b"HTTP/"):
        assert b" 4" in head.split(b"\r\n")[0], head
    assert not not_json, f"non-JSON lines in the function's log: {not_json[:5]}"


def test_fuzz_server_survives_concurrent_garbage(fuzz):
    """A burst of garbage from 8 threads at once, on the same process: still answers afterwards."""
    def worker(seed: int):
        client = Http(fuzz.fn.port)
        try:
            for i in range(50):
                client.request("POST", body=bytes((seed * 31 + i * 7 + k) % 256 for k in range(64)),
                               content_type="application/json")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert fuzz.fn.process.poll() is None
    body = json.dumps({"text": "Apple in Paris", "request_id": fuzz.new_id()})
    assert fuzz.client.request("POST", body=body).status == 200


def test_admin_sees_no_row_of_a_rejected_request(fuzz, admin_dsn):
    rid = fuzz.new_id()
    reply = fuzz.client.request("POST", body=json.dumps({"text": "Apple\x00", "request_id": rid}))
    assert reply.status == 422
    with psycopg.connect(admin_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM nlp.documents WHERE request_id = %s", (rid,)).fetchone()[0]
    assert count == 0
