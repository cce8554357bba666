"""The Kibana NDJSON is importable as it stands (type, id, attributes; references that resolve inside the
file; embedded JSON that parses) and the alert rule is a valid create-rule request body."""

from __future__ import annotations

import json

import pytest

from tests.logging import fieldrefs

KNOWN_TYPES = {"index-pattern", "search", "visualization", "dashboard", "lens"}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return fieldrefs.saved_objects()


def test_each_line_is_an_object_with_type_id_and_attributes():
    for number, line in enumerate(fieldrefs.SAVED_OBJECTS.read_text(encoding="utf-8").splitlines(), 1):
        obj = json.loads(line)
        assert obj["type"] in KNOWN_TYPES, number
        assert isinstance(obj["id"], str) and obj["id"], number
        assert isinstance(obj["attributes"], dict) and obj["attributes"].get("title"), number
        assert isinstance(obj.get("references", []), list), number


def test_ids_are_unique_per_type(objects):
    keys = [(obj["type"], obj["id"]) for obj in objects]
    assert len(keys) == len(set(keys))


def test_every_reference_resolves_to_an_object_in_the_file(objects):
    present = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        for ref in obj.get("references", []):
            assert set(ref) == {"name", "type", "id"}, ref
            assert (ref["type"], ref["id"]) in present, (obj["id"], ref)


def _ref_names_used(value) -> set[str]:
    """indexRefName / panelRefName values inside the decoded attributes."""
    names = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("indexRefName", "panelRefName") and isinstance(item, str):
                names.add(item)
            names |= _ref_names_used(item)
    elif isinstance(value, list):
        for item in value:
            names |= _ref_names_used(item)
    return names


def test_ref_names_inside_attributes_match_the_references_exactly(objects):
    for obj in objects:
        used = _ref_names_used(fieldrefs.decoded(obj["attributes"]))
        declared = {ref["name"] for ref in obj.get("references", [])}
        assert used == declared, obj["id"]


def test_embedded_json_attributes_parse(objects):
    for obj in objects:
        attributes = obj["attributes"]
        for key in ("visState", "uiStateJSON", "panelsJSON", "optionsJSON", "fieldFormatMap"):
            if key in attributes:
                json.loads(attributes[key])
        meta = attributes.get("kibanaSavedObjectMeta")
        if meta:
            json.loads(meta["searchSourceJSON"])


def test_searches_and_visualizations_use_the_data_view(objects):
    data_views = {obj["id"] for obj in objects if obj["type"] == "index-pattern"}
    assert len(data_views) == 1
    for obj in objects:
        if obj["type"] in ("search", "visualization"):
            vis = json.loads(obj["attributes"].get("visState", "{}"))
            if vis.get("type") == "metrics":  # TSVB names its index pattern in params
                continue
            refs = [ref for ref in obj["references"] if ref["type"] == "index-pattern"]
            assert [ref["id"] for ref in refs] == list(data_views), obj["id"]


def test_visualizations_are_consistent(objects):
    for obj in objects:
        if obj["type"] != "visualization":
            continue
        vis = json.loads(obj["attributes"]["visState"])
        assert vis["title"] == obj["attributes"]["title"]
        ids = [agg["id"] for agg in vis["aggs"]]
        assert len(ids) == len(set(ids)), obj["id"]
        metric_ids = {agg["id"] for agg in vis["aggs"] if agg["schema"] == "metric"}
        for series in vis["params"].get("seriesParams", []):
            assert series["data"]["id"] in metric_ids, (obj["id"], series)
        if vis["type"] == "metrics":
            for series in vis["params"]["series"]:
                assert series["metrics"] and series["id"]


def test_the_dashboard_panels_fit_the_grid_without_overlapping(objects):
    (board,) = [obj for obj in objects if obj["type"] == "dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    cells = set()
    for panel in panels:
        grid = panel["gridData"]
        assert grid["x"] + grid["w"] <= 48 and grid["i"] == panel["panelIndex"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, panel["panelIndex"]
        cells |= area


def test_the_dashboard_has_the_sre_panels(objects):
    (board,) = [obj for obj in objects if obj["type"] == "dashboard"]
    by_id = {obj["id"]: obj for obj in objects}
    titles = [by_id[ref["id"]]["attributes"]["title"] for ref in board["references"]]
    for expected in ("Requests per function", "Error rate per function", "p50 / p95 / p99",
                     "over 1,000 characters", "Cold starts", "Database write failures",
                     "Entities found per label"):
        assert any(expected in title for title in titles), expected
    panels = json.loads(board["attributes"]["panelsJSON"])
    long_texts = [p for p, ref in zip(panels, board["references"], strict=True)
                  if "1,000" in by_id[ref["id"]]["attributes"]["title"]]
    assert long_texts[0]["embeddableConfig"]["timeRange"] == {"from": "now-1h", "to": "now"}


def test_the_trail_search_is_sorted_by_time_and_shows_request_id(objects):
    (trail,) = [obj for obj in objects if obj["id"] == "nlp-request-trail"]
    assert trail["type"] == "search"
    assert trail["attributes"]["sort"] == [["@timestamp", "asc"]]
    assert trail["attributes"]["columns"][0] == "request_id"


def test_the_ndjson_is_what_the_generator_writes():
    generator = fieldrefs.load_generator()
    assert fieldrefs.SAVED_OBJECTS.read_text(encoding="utf-8") == generator.render(), \
        "saved-objects.ndjson is stale: run build/venv/bin/python logstash/kibana/generate_saved_objects.py"


# --- the alert rule ------------------------------------------------------------------------------------

# Kibana's create-rule body schema (x-pack alerting, routes/rule/apis/create) rejects unknown keys.
RULE_BODY_KEYS = {"name", "rule_type_id", "enabled", "consumer", "tags", "throttle", "params", "schedule",
                  "actions", "notify_when", "alert_delay", "flapping"}
# The .es-query rule type's params (stack_alerts es_query/rule_type_params.ts).
ES_QUERY_PARAMS = {"size", "timeWindowSize", "excludeHitsFromPreviousRun", "timeWindowUnit", "threshold",
                   "thresholdComparator", "aggType", "aggField", "groupBy", "termField", "termSize",
                   "searchType", "timeField", "searchConfiguration", "esQuery", "index", "esqlQuery"}


@pytest.mark.parametrize("path", fieldrefs.RULES, ids=lambda p: p.name)
def test_the_rule_is_a_valid_es_query_create_body(path):
    rule = fieldrefs.load_rule(path)
    assert set(rule) <= RULE_BODY_KEYS
    assert {"name", "rule_type_id", "consumer", "params", "schedule"} <= set(rule)
    assert rule["rule_type_id"] == ".es-query"
    params = rule["params"]
    assert set(params) <= ES_QUERY_PARAMS
    assert params["searchType"] == "esQuery"
    assert params["thresholdComparator"] in {">", ">=", "<", "<=", "between", "notBetween"}
    assert len(params["threshold"]) == 1 and params["threshold"][0] >= 0
    assert (params["timeWindowSize"], params["timeWindowUnit"]) == (5, "m")
    assert params["timeField"] == "@timestamp"
    assert "query" in json.loads(params["esQuery"])
    # Counting over overlapping 5-minute windows needs the previous run's hits counted again.
    assert params["excludeHitsFromPreviousRun"] is False
