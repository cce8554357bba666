"""One field contract from the Python logger through Logstash, the index template, Kibana and the alert
rule: renaming a log field on one side without the others fails here.

The logger side is what functions.runtime.logs really prints for one call per kind of line (see
fieldrefs.representative_lines); test_function_logs.py repeats the reference check against the lines of
a running ner-processor.
"""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import UTC, datetime

import pytest
import yaml
from logstash_pipeline_parser.tree import ParseError

from tests.logging import fieldrefs
from tests.logging.fieldrefs import (
    CONTRACT_TYPES,
    dedot,
    emitted_fields,
    iter_plugins,
    parse_pipeline,
    pipeline_label_filter,
    pipeline_output_index,
    referenced_logger_fields,
    render_index_name,
    template_mappings,
    unknown_references,
)


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    return fieldrefs.representative_lines()


@pytest.fixture(scope="module")
def emitted(lines) -> set[str]:
    return emitted_fields(lines)


@pytest.fixture(scope="module")
def tree() -> list:
    return parse_pipeline()


@pytest.fixture(scope="module")
def model_labels() -> tuple[str, ...]:
    return fieldrefs.load_generator().NER_LABELS


# --- the logger side -----------------------------------------------------------------------------------


def test_the_logger_emits_every_contract_field(emitted):
    assert set(CONTRACT_TYPES) <= emitted, set(CONTRACT_TYPES) - emitted


def test_kibana_label_list_is_the_bundled_models_ner_labels(model_labels):
    spacy = pytest.importorskip("spacy")
    from functions.runtime.settings import Settings

    nlp = spacy.load(Settings().spacy_model, exclude=["tagger", "parser", "lemmatizer",
                                                      "attribute_ruler", "senter"])
    assert tuple(sorted(nlp.get_pipe("ner").labels)) == tuple(sorted(model_labels))


# --- every reference resolves ----------------------------------------------------------------------------


def test_every_field_the_logstash_kibana_and_rule_files_name_is_emitted(emitted, model_labels):
    problems = {artifact: sorted(unknown_references(fields, emitted, model_labels))
                for artifact, fields in referenced_logger_fields().items()}
    problems = {artifact: names for artifact, names in problems.items() if names}
    assert not problems, f"fields named but never logged: {problems}"


def test_the_reference_check_catches_a_renamed_field(emitted, model_labels):
    renamed = emitted - {"duration_ms"} | {"duration"}
    dashboards = referenced_logger_fields()
    assert any("duration_ms" in unknown_references(fields, renamed, model_labels)
               for fields in dashboards.values())


def test_a_nested_logstash_reference_to_a_flat_key_is_not_accepted(tree, emitted, model_labels):
    # [log][level] is a different Logstash field from the flat "log.level" the json filter creates.
    text = fieldrefs.PIPELINE.read_text()
    text = text.replace('"status_code" => "integer"', '"[log][level]" => "integer"')
    broken = parse_pipeline(text)
    produced = fieldrefs.pipeline_produced_fields(broken, text) - set(CONTRACT_TYPES)
    unknown = unknown_references(fieldrefs.pipeline_logger_fields(broken) - produced, emitted, model_labels)
    assert unknown == {"[log][level]"}


# --- Logstash pipeline -----------------------------------------------------------------------------------


def test_the_pipeline_parses_and_a_syntax_error_does_not(tree):
    assert [section for section, *_ in tree] == ["input", "filter", "output"]
    with pytest.raises(ParseError):
        parse_pipeline(fieldrefs.PIPELINE.read_text().replace("drop {", "drop {{", 1))


def test_the_pipeline_listens_for_beats_on_5044(tree):
    inputs = [(name, s) for section, name, s, _ in iter_plugins(tree) if section == "input"]
    assert inputs == [("beats", {"id": "nlp_beats", "port": 5044})]


def test_json_failures_are_tagged_and_kept(tree):
    filters = [(name, s, cond) for section, name, s, cond in iter_plugins(tree) if section == "filter"]
    json_filters = [s for name, s, _ in filters if name == "json"]
    # The function's JSON into the event, the queue-worker's into its own object.
    assert sorted(s.get("target", "") for s in json_filters) == ["", "queue_worker"]
    for settings in json_filters:
        assert settings["source"] == "message"
        assert "_jsonparsefailure" in settings["tag_on_failure"]
        assert settings.get("skip_on_invalid_json", False) is False
    # The only drop is the pod-label one: nothing drops on a failure tag.
    drops = [cond for name, _, cond in filters if name == "drop"]
    assert len(drops) == 1 and "kubernetes" in json.dumps(drops)


def test_a_broken_json_line_and_an_unknown_text_line_are_kept_and_tagged():
    from tests.logging.pipeline_sim import Pipeline

    labels = {"com_nlp-enrichment/logs": "json", "faas_function": "ner-processor"}
    pipeline = Pipeline()
    for message, tag in (('{"log.level": "info", "message": "cut', "_jsonparsefailure"),
                         ("Killed", "_grokparsefailure")):
        event = pipeline.run({"message": message, "kubernetes": {"labels": labels}})
        assert event is not None and event["message"] == message
        assert tag in event["tags"] and event["function"] == "ner-processor"


def test_the_pipeline_types_every_numeric_contract_field(tree, lines):
    numeric = {key for key, types in CONTRACT_TYPES.items() if int in types}
    converted = {}
    for section, name, settings, _ in iter_plugins(tree):
        if section == "filter" and name == "mutate" and "convert" in settings:
            converted.update({key: value[0] for key, value in settings["convert"]})
    assert set(converted) == numeric
    for key, kind in converted.items():
        allowed = {"integer"} if CONTRACT_TYPES[key] == (int,) else {"float"}
        assert kind in allowed, (key, kind)


def test_the_date_filter_reads_the_field_the_json_filter_leaves_on_failure(tree):
    dates = [(s, cond) for section, name, s, cond in iter_plugins(tree) if name == "date"]
    assert len(dates) == 1
    settings, condition = dates[0]
    assert settings["match"][0] == "[_@timestamp]" and "ISO8601" in settings["match"]
    assert settings["target"] == "@timestamp"
    assert "_timestampparsefailure" in json.dumps(condition)


# --- one index name ------------------------------------------------------------------------------------


def test_data_view_template_rule_and_tsvb_cover_the_pipelines_index(tree):
    index = render_index_name(pipeline_output_index(tree), datetime(2026, 11, 21, tzinfo=UTC))
    assert index == "nlp-pipeline-2026.11.21"
    objects = fieldrefs.saved_objects()
    patterns = {"data view": [o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"],
                "index template": fieldrefs.load_template()["index_patterns"],
                "rule": fieldrefs.load_rule()["params"]["index"],
                "TSVB": [fieldrefs.decoded(o["attributes"]["visState"])["params"]["index_pattern"]
                         for o in objects if o["type"] == "visualization"
                         and json.loads(o["attributes"]["visState"])["type"] == "metrics"]}
    for source, values in patterns.items():
        assert values, source
        for pattern in values:
            assert fnmatch.fnmatchcase(index, pattern), (source, pattern, index)
            assert not fnmatch.fnmatchcase("filebeat-8.15.0-2026.11.21", pattern), (source, pattern)


# --- index template ------------------------------------------------------------------------------------

_COMPATIBLE = {int: {"short", "integer", "long", "float", "double"}, float: {"float", "double"},
               str: {"keyword", "text", "date"}, bool: {"boolean"}, dict: {"object", "flattened"}}


def test_the_template_maps_every_emitted_field_explicitly_with_a_compatible_type(lines):
    from tests.logging.pipeline_sim import Pipeline
    from tests.logging.test_watchdog_lines import SAMPLES, shipped

    mappings = template_mappings(fieldrefs.load_template())
    pipeline = Pipeline()
    watchdog = [{key: value for key, value in pipeline.run(shipped(sample.message)).items()
                 if key.split(".")[0] not in fieldrefs.SHIPPER_ROOTS} for sample in SAMPLES]
    for line in lines + watchdog:
        for key, value in line.items():
            if key.startswith("detail"):  # the probe's own payload, not a contract field
                continue
            assert key in mappings, f"{key} has no explicit mapping"
            kind = bool if isinstance(value, bool) else type(value)
            assert mappings[key]["type"] in _COMPATIBLE[kind], (key, value, mappings[key])


def test_the_template_keeps_ids_and_names_as_keywords_and_messages_searchable():
    mappings = template_mappings(fieldrefs.load_template())
    for key in ("event", "function", "service", "request_id", "log.level", "error.type", "model_name",
                "model_version"):
        assert mappings[key]["type"] == "keyword", key
    for key in ("message", "error.message"):
        assert mappings[key]["type"] == "text" and mappings[key]["fields"]["keyword"]["type"] == "keyword"
    assert mappings["@timestamp"]["type"] == "date"


def test_entity_counts_per_label_are_numbers_in_elasticsearch():
    template = fieldrefs.load_template()["template"]["mappings"]
    dynamic = {name: spec for entry in template["dynamic_templates"] for name, spec in entry.items()}
    entity_rule = [spec for spec in dynamic.values() if spec.get("path_match") == "entities_by_label.*"]
    assert entity_rule and entity_rule[0]["mapping"]["type"] == "long"
    # The rule must come before the catch-all string rule (first match wins).
    assert list(dynamic)[0] == "entity_counts_per_label"


# --- Filebeat and the pod label -----------------------------------------------------------------------


def _filebeat_inputs() -> list[dict]:
    return fieldrefs.load_filebeat()["filebeat.inputs"]


def _processor(name: str) -> dict:
    config = fieldrefs.load_filebeat()
    processors = config.get("processors", []) + [p for i in _filebeat_inputs() for p in i.get("processors", [])]
    found = [p[name] for p in processors if name in p]
    assert len(found) == 1, name
    return found[0]


def test_filebeat_reads_both_streams_of_container_logs_with_filestream_and_ships_to_logstash():
    config = fieldrefs.load_filebeat()
    streams = {}
    for source in _filebeat_inputs():
        assert source["type"] == "filestream" and source["id"]
        assert source["paths"] == ["/var/log/containers/*.log"]
        (container,) = [parser["container"] for parser in source["parsers"] if "container" in parser]
        streams[container["stream"]] = source
    assert set(streams) == {"stdout", "stderr"}
    assert len({source["id"] for source in _filebeat_inputs()}) == 2
    # stdout is one JSON object per line: never joined; stderr joins stack traces.
    assert not [p for p in streams["stdout"]["parsers"] if "multiline" in p]
    assert [p for p in streams["stderr"]["parsers"] if "multiline" in p]
    assert config["output.logstash"]["hosts"] == ["logstash:5044"]


def test_filebeat_dedots_label_keys_and_filters_on_the_pipelines_label(tree):
    metadata = _processor("add_kubernetes_metadata")
    # Absent means the default (true); the pipeline's key form depends on it.
    assert metadata.get("labels.dedot", metadata.get("labels", {}).get("dedot", True)) is True
    key, value = pipeline_label_filter(tree)
    opt_in, queue_worker = _processor("drop_event")["when"]["not"]["or"]
    assert opt_in == {"equals": {f"kubernetes.labels.{key}": value}}
    # The queue-worker: the same namespace and label the pipeline selects it by.
    label, label_value = fieldrefs.QUEUE_WORKER_LABEL
    assert queue_worker == {"and": [{"equals": {"kubernetes.namespace": fieldrefs.QUEUE_WORKER_NAMESPACE}},
                                    {"equals": {f"kubernetes.labels.{label}": label_value}}]}
    selections = [condition for condition in fieldrefs.iter_conditions(tree)
                  if ["[kubernetes][namespace]", "==", fieldrefs.QUEUE_WORKER_NAMESPACE] in condition
                  and [f"[kubernetes][labels][{label}]", "==", label_value] in condition]
    assert len(selections) == 1, selections


def test_the_pipeline_selects_the_pod_label_stack_yml_sets(tree):
    if not fieldrefs.STACK.exists():
        pytest.skip("stack.yml is not written yet (owned by the deploy issue)")
    stack = yaml.safe_load(fieldrefs.STACK.read_text(encoding="utf-8"))
    key, value = pipeline_label_filter(tree)
    functions = stack.get("functions") or {}
    assert functions, "stack.yml declares no functions"
    for name, spec in functions.items():
        labels = (spec or {}).get("labels") or {}
        matching = {label: str(v) for label, v in labels.items() if dedot(label) == key}
        assert matching, f"{name}: no label whose de-dotted key is {key!r} (labels: {sorted(labels)})"
        assert set(matching.values()) == {value}, (name, matching, value)


def test_dedot_follows_beats_rule():
    assert dedot("com.nlp-enrichment/logs") == "com_nlp-enrichment/logs"
    assert dedot("app.kubernetes.io/name") == "app_kubernetes_io/name"


def test_the_watchdog_relays_lines_without_a_prefix():
    """of-watchdog's default prefix_logs=true turns each line into "2026/11/21 05:39:00 stdout: {...}",
    which Logstash could not parse: the image (or stack.yml) must switch it off."""
    dockerfile = fieldrefs.REPO / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("Dockerfile is not written yet")
    settings = re.findall(r"\bprefix_logs\s*[=:]\s*\"?(\w+)", dockerfile.read_text(encoding="utf-8"))
    if fieldrefs.STACK.exists():
        stack = yaml.safe_load(fieldrefs.STACK.read_text(encoding="utf-8"))
        for spec in (stack.get("functions") or {}).values():
            value = ((spec or {}).get("environment") or {}).get("prefix_logs")
            if value is not None:
                settings.append(str(value))
    assert settings and all(value.lower() == "false" for value in settings), settings
