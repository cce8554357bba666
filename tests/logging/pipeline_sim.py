"""Runs the Filebeat configuration and the Logstash filter section of this repository on log text in Python,
so tests can feed them real lines and look at the events Elasticsearch would get.

- Logstash: the parse tree comes from logstash-pipeline-parser (Logstash's grammar); string values are
  taken back to their raw text, as Logstash reads them (``config.support_escapes`` is off by default, so
  ``"\\d"`` stays a backslash and a d); grok patterns run with pygrok (a Python grok implementation on the
  ``regex`` module) loaded with the Logstash base patterns it ships plus the pipeline's ``patterns_dir``
  files from logstash/patterns; the plugins and conditionals this pipeline uses behave as Logstash
  documents them. Anything the simulator does not know (a plugin, an option, a condition form) raises, so
  it can never silently skip part of the pipeline.
- Filebeat: the container log format (CRI), each filestream input's ``container`` stream filter and
  ``multiline`` parser, and the global ``add_kubernetes_metadata`` / ``drop_event`` processors.

Events are plain dicts: a Logstash field reference ``[a][b]`` is a nested path, a bare name (``log.level``)
is one top-level key, dots included.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import pyparsing as pp
import regex
from pygrok import Grok

from tests.logging import fieldrefs

PATTERNS_DIR = fieldrefs.LOGSTASH / "patterns"
# Where argocd/logging/logstash.yaml mounts logstash/patterns (tests check the mount).
PATTERNS_MOUNT = "/usr/share/logstash/patterns"

# Options every filter plugin accepts (LogStash::Filters::Base).
_COMMON = {"id", "add_field", "add_tag", "remove_field", "remove_tag", "enable_metric", "periodic_flush"}
_KNOWN_OPTIONS = {
    "drop": set(),
    "mutate": {"rename", "replace", "convert", "copy", "update", "gsub"},
    "json": {"source", "skip_on_invalid_json", "tag_on_failure", "target"},
    "grok": {"match", "patterns_dir", "pattern_definitions", "tag_on_failure", "break_on_match"},
    "date": {"match", "target", "timezone", "tag_on_failure"},
}


class Unsupported(Exception):
    """The pipeline uses something this simulator does not implement."""


# --- raw string values -----------------------------------------------------------------------------------


def _quoted_literals(text: str) -> Iterator[tuple[str, str]]:
    """(quote, raw content) of every quoted string of a pipeline file, comments skipped."""
    position = 0
    while position < len(text):
        char = text[position]
        if char == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
        elif char in "\"'":
            end = position + 1
            while text[end] != char:
                end += 2 if text[end] == "\\" else 1
            yield char, text[position + 1:end]
            position = end + 1
        else:
            position += 1


def raw_strings(text: str) -> dict[str, str]:
    """Map each string value as logstash-pipeline-parser returns it (escapes processed) back to the raw text
    Logstash uses; raises when two different raw strings would read the same."""
    mapping: dict[str, str] = {}
    for quote, raw in _quoted_literals(text):
        parsed = pp.QuotedString(quote_char=quote, esc_char="\\").parse_string(quote + raw + quote)[0]
        if mapping.setdefault(parsed, raw) != raw:
            raise Unsupported(f"two raw strings read as {parsed!r}: {mapping[parsed]!r} and {raw!r}")
    return mapping


# --- events ------------------------------------------------------------------------------------------------

_SELECTOR = re.compile(r"^(\[[^\[\],]+\])+$")
_SPRINTF = re.compile(r"%\{([^}]+)\}")


def path_of(ref: str) -> tuple[str, ...]:
    ref = ref.strip()
    return tuple(re.findall(r"\[([^\[\]]+)\]", ref)) if _SELECTOR.match(ref) else (ref,)


def get(event: dict, ref: str, default=None):
    value = event
    for key in path_of(ref):
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def has(event: dict, ref: str) -> bool:
    marker = object()
    return get(event, ref, marker) is not marker


def set_field(event: dict, ref: str, value) -> None:
    *parents, last = path_of(ref)
    target = event
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value


def remove(event: dict, ref: str) -> None:
    *parents, last = path_of(ref)
    target = event
    for key in parents:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(last, None)


def sprintf(event: dict, template: str) -> str:
    """Logstash's sprintf: %{field} is replaced by its value; a missing field stays as written."""

    def value(match: re.Match) -> str:
        found = get(event, match.group(1))
        if found is None:
            return match.group(0)
        return json.dumps(found) if isinstance(found, dict | list) else str(found)

    return _SPRINTF.sub(value, template)


def add_tag(event: dict, tag: str) -> None:
    tags = event.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


# --- the Logstash filter section ---------------------------------------------------------------------------


@dataclass
class Pipeline:
    text: str = field(default_factory=lambda: fieldrefs.PIPELINE.read_text(encoding="utf-8"))

    def __post_init__(self) -> None:
        self.tree = fieldrefs.parse_pipeline(self.text)
        self.raw = raw_strings(self.text)
        self.filters = [body for section, body in self.tree if section == "filter"]

    def run(self, event: dict) -> dict | None:
        """The event after every filter, or None when the pipeline dropped it."""
        event = copy.deepcopy(event)
        for body in self.filters:
            if not self._block(body, event):
                return None
        return event

    # Raw text of a string value (grok patterns, regexes); other values unchanged.
    def _raw(self, value):
        return self.raw.get(value, value) if isinstance(value, str) else value

    def _block(self, nodes: list, event: dict) -> bool:
        """Run a list of plugins and conditionals; False when the event was dropped."""
        index = 0
        while index < len(nodes):
            name, body = nodes[index]
            index += 1
            if name in ("else if", "else"):
                raise Unsupported(f"{name} without if")
            if name != "if":
                if not self._plugin(name, body, event):
                    return False
                continue
            chain = [body]
            while index < len(nodes) and nodes[index][0] in ("else if", "else"):
                chain.append(nodes[index][1] if nodes[index][0] == "else if" else None)
                else_body = nodes[index][1]
                index += 1
                if chain[-1] is None:
                    chain[-1] = ("else", else_body)
                    break
            for branch in chain:
                if isinstance(branch, tuple):  # else
                    plugins = branch[1]
                else:
                    *condition, block = branch
                    if not self._condition(condition, event):
                        continue
                    plugins = block[0]
                if not self._block(plugins, event):
                    return False
                break
        return True

    def _condition(self, parts: list, event: dict) -> bool:
        values = [self._expression(part, event) for part in parts[::2]]
        operators = set(parts[1::2])
        if not operators:
            return values[0]
        if operators == {"and"}:
            return all(values)
        if operators == {"or"}:
            return any(values)
        raise Unsupported(f"mixed boolean operators {operators}")

    def _rvalue(self, value, event: dict):
        if isinstance(value, str) and _SELECTOR.match(value):
            return get(event, value)
        return value

    def _expression(self, expr, event: dict) -> bool:
        if isinstance(expr, str) or (isinstance(expr, list) and len(expr) == 1 and isinstance(expr[0], str)):
            ref = expr if isinstance(expr, str) else expr[0]
            if not _SELECTOR.match(ref):
                raise Unsupported(f"bare value in a condition: {ref!r}")
            return get(event, ref) not in (None, False)
        if len(expr) == 2 and expr[0] == "!":
            inner = expr[1]
            if isinstance(inner, str) or len(inner) == 3 and isinstance(inner[1], str):
                return not self._expression(inner, event)
            return not self._condition(inner, event)
        if len(expr) != 3:
            return self._condition(expr, event)
        left, operator, right = expr
        if operator in ("=~", "!~"):
            value = self._rvalue(left, event)
            found = isinstance(value, str) and regex.search(self._raw(right), value) is not None
            return found if operator == "=~" else not found
        if operator in ("in", "not in"):
            container = self._rvalue(right, event)
            item = self._rvalue(left, event)
            found = container is not None and item in (container if isinstance(container, list) else [container])
            return found if operator == "in" else not found
        a, b = self._rvalue(left, event), self._rvalue(right, event)
        if operator == "==":
            return a == b
        if operator == "!=":
            return a != b
        if a is None or b is None:
            return False
        if isinstance(a, str) != isinstance(b, str):
            raise Unsupported(f"Logstash cannot compare {a!r} {operator} {b!r}")
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[operator]

    # --- plugins ---

    def _plugin(self, name: str, body: list, event: dict) -> bool:
        settings = fieldrefs._settings(body)
        known = _KNOWN_OPTIONS.get(name)
        if known is None:
            raise Unsupported(f"filter plugin {name}")
        unknown = set(settings) - known - _COMMON
        if unknown:
            raise Unsupported(f"{name} options {sorted(unknown)}")
        if name == "drop":
            return False
        matched = getattr(self, f"_{name}")(settings, event)
        if matched:
            self._decorate(settings, event)
        return True

    def _decorate(self, settings: dict, event: dict) -> None:
        """filter_matched: add_field, add_tag, remove_field, remove_tag (LogStash::Filters::Base)."""
        for key, value in _pairs(settings.get("add_field")):
            key, value = sprintf(event, key), sprintf(event, value)
            if has(event, key):
                current = get(event, key)
                set_field(event, key, (current if isinstance(current, list) else [current]) + [value])
            else:
                set_field(event, key, value)
        for tag in _list(settings.get("add_tag")):
            add_tag(event, sprintf(event, tag))
        for key in _list(settings.get("remove_field")):
            remove(event, sprintf(event, key))
        for tag in _list(settings.get("remove_tag")):
            if tag in event.get("tags", []):
                event["tags"].remove(tag)

    def _mutate(self, settings: dict, event: dict) -> bool:
        # logstash-filter-mutate's order: rename, update, replace, convert (then the common options).
        for source, target in _pairs(settings.get("rename")):
            if has(event, source):
                value = get(event, source)
                remove(event, source)
                set_field(event, target, value)
        for key, value in _pairs(settings.get("update")):
            if has(event, key):
                set_field(event, key, sprintf(event, value))
        for key, value in _pairs(settings.get("replace")):
            set_field(event, key, sprintf(event, value))
        for key, kind in _pairs(settings.get("convert")):
            if has(event, key):
                set_field(event, key, _convert(get(event, key), kind))
        gsub = [self._raw(item) for item in _list(settings.get("gsub"))]
        if len(gsub) % 3:
            raise Unsupported(f"gsub needs field/pattern/replacement triples: {gsub}")
        for key, pattern, replacement in zip(gsub[::3], gsub[1::3], gsub[2::3], strict=True):
            value = get(event, key)
            if isinstance(value, str):
                # Ruby's String#gsub: \1 in the replacement is the first group (regex.sub reads it alike).
                set_field(event, key, regex.sub(pattern, replacement, value))
        for source, target in _pairs(settings.get("copy")):
            if has(event, source):
                set_field(event, target, copy.deepcopy(get(event, source)))
        return True

    def _json(self, settings: dict, event: dict) -> bool:
        source = get(event, settings["source"])
        try:
            parsed = json.loads(source)
            if not isinstance(parsed, dict):
                raise ValueError("not an object")
        except (TypeError, ValueError):
            if settings.get("skip_on_invalid_json") is True:
                return False
            for tag in _list(settings.get("tag_on_failure", ["_jsonparsefailure"])):
                add_tag(event, tag)
            return False
        if "target" in settings:
            # With a target the object goes there whole; "@timestamp" inside it is an ordinary key.
            set_field(event, settings["target"], parsed)
            return True
        for key, value in parsed.items():
            if key == "@timestamp":
                if isinstance(value, str) and _iso8601(value) is not None:
                    event["@timestamp"] = value
                else:
                    event["_@timestamp"] = value
                    add_tag(event, "_timestampparsefailure")
            else:
                event[key] = value
        return True

    def _grok(self, settings: dict, event: dict) -> bool:
        if settings.get("break_on_match", True) is not True:
            raise Unsupported("grok break_on_match => false")
        definitions = {name: self._raw(value) for name, value in _pairs(settings.get("pattern_definitions"))}
        directories = []
        for directory in _list(settings.get("patterns_dir")):
            if directory != PATTERNS_MOUNT:
                raise Unsupported(f"patterns_dir {directory} (this repository mounts {PATTERNS_MOUNT})")
            directories.append(str(PATTERNS_DIR))
        for source, patterns in _pairs(settings.get("match")):
            value = get(event, source)
            if not isinstance(value, str):
                continue
            for pattern in _list(patterns):
                captures = compiled_grok(self._raw(pattern), tuple(directories),
                                         tuple(sorted(definitions.items()))).match(value)
                if captures is not None:
                    for name, captured in captures.items():
                        if captured is not None:
                            set_field(event, name, captured)
                    return True
        for tag in _list(settings.get("tag_on_failure", ["_grokparsefailure"])):
            add_tag(event, tag)
        return False

    def _date(self, settings: dict, event: dict) -> bool:
        source, *formats = _list(settings["match"])
        value = get(event, source)
        for fmt in formats:
            parsed = _parse_date(value, fmt)
            if parsed is not None:
                set_field(event, settings.get("target", "@timestamp"),
                          parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
                return True
        for tag in _list(settings.get("tag_on_failure", ["_dateparsefailure"])):
            add_tag(event, tag)
        return False


@cache
def compiled_grok(pattern: str, directories: tuple[str, ...], definitions: tuple[tuple[str, str], ...]) -> Grok:
    if len(directories) > 1:
        raise Unsupported("more than one patterns_dir")
    return Grok(pattern, custom_patterns_dir=directories[0] if directories else None,
                custom_patterns=dict(definitions))


def _list(value) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        flat = []
        for item in value:
            flat.extend(_list(item) if isinstance(item, list) else [item])
        return flat
    return [value]


def _pairs(value) -> list[tuple]:
    """Key/value pairs of a Logstash hash setting as logstash-pipeline-parser returns it."""
    if value is None:
        return []
    pairs = []
    for entry in value if isinstance(value, list) else [value]:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            item = entry[1]
            pairs.append((entry[0], item[0] if isinstance(item, list) and len(item) == 1 else item))
        elif isinstance(entry, list):
            pairs.extend(_pairs(entry))
        else:
            raise Unsupported(f"hash entry {entry!r}")
    return pairs


def _convert(value, kind: str):
    if isinstance(value, list):
        return [_convert(item, kind) for item in value]
    if kind == "integer":
        return value if isinstance(value, int) else int(float(value))
    if kind == "float":
        return float(value)
    if kind == "string":
        return str(value)
    raise Unsupported(f"convert to {kind}")


def _iso8601(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _parse_date(value, fmt: str) -> datetime | None:
    if fmt == "ISO8601":
        return _iso8601(value) if isinstance(value, str) else None
    if fmt in ("UNIX", "UNIX_MS"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return datetime.fromtimestamp(number / (1000 if fmt == "UNIX_MS" else 1), tz=UTC)
    if fmt == "yyyy-MM-dd HH:mm:ss.SSS":
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        except (TypeError, ValueError):
            return None
    raise Unsupported(f"date format {fmt}")


# --- Filebeat --------------------------------------------------------------------------------------------

_CRI = re.compile(r"^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<tag>[PF]) (?P<text>.*)$")


@dataclass(frozen=True)
class Pod:
    """What add_kubernetes_metadata would find for the pod whose log file is read."""

    name: str = "ner-processor-7d9f8b6c5d-x2k4q"
    namespace: str = "openfaas-fn"
    labels: tuple[tuple[str, str], ...] = (("faas_function", "ner-processor"),
                                           ("com.nlp-enrichment/logs", "json"))


def filebeat_event(message: str, pod: Pod | None = None, *, stream: str = "stderr",
                   time: str = "2026-11-30T07:00:05.123456789Z") -> dict:
    """The event Filebeat sends for one log line of ``pod`` (default: a function pod), after
    add_kubernetes_metadata."""
    pod = pod or Pod()
    return {"@timestamp": time, "message": message, "stream": stream, "input": {"type": "filestream"},
            "agent": {"type": "filebeat"}, "ecs": {"version": "8.0.0"},
            "kubernetes": {"namespace": pod.namespace, "pod": {"name": pod.name},
                           "labels": {fieldrefs.dedot(key): value for key, value in pod.labels}}}


def cri_records(text: str) -> list[tuple[str, str, str]]:
    """(timestamp, stream, line) of a CRI container log; partial (P) records are joined per stream."""
    records, partial = [], {}
    for row in text.splitlines():
        match = _CRI.match(row)
        if not match:
            raise ValueError(f"not a CRI log record: {row!r}")
        stream = match["stream"]
        head = partial.pop(stream, None)
        line = (head[1] if head else "") + match["text"]
        if match["tag"] == "P":
            partial[stream] = (head[0] if head else match["time"], line)
            continue
        records.append((head[0] if head else match["time"], stream, line))
    return records


def cri_log(records: Iterable[tuple[str, str, str]]) -> str:
    """Write (timestamp, stream, line) records in the CRI format the kubelet's log files use."""
    return "".join(f"{time} {stream} F {line}\n" for time, stream, line in records)


def _join_multiline(records: list[tuple[str, str, str]], parser: dict) -> list[tuple[str, str, str, bool]]:
    if parser.get("type", "pattern") != "pattern" or parser.get("match") != "after":
        raise Unsupported(f"multiline {parser}")
    pattern = re.compile(parser["pattern"])
    negate = parser.get("negate", False)
    max_lines = parser.get("max_lines", 500)
    events: list[list] = []
    for time, stream, line in records:
        continues = bool(pattern.search(line)) != negate
        if continues and events and events[-1][4] < max_lines:
            events[-1][2] += "\n" + line
            events[-1][3] = True
            events[-1][4] += 1
        else:
            events.append([time, stream, line, False, 1])
    return [(time, stream, text, joined) for time, stream, text, joined, _ in events]


def filebeat_events(log_text: str, pod: Pod = Pod(), config: dict | None = None) -> list[dict]:
    """The events logstash/filebeat.yml ships for one pod's container log file (CRI format), in time order."""
    config = config or fieldrefs.load_filebeat()
    records = cri_records(log_text)
    events = []
    for source in config["filebeat.inputs"]:
        if source.get("type") != "filestream":
            raise Unsupported(f"input type {source.get('type')}")
        selected = records
        joined = [(time, stream, line, False) for time, stream, line in selected]
        for parser in source.get("parsers", []):
            (name, options), = parser.items()
            if name == "container":
                stream = options.get("stream", "all")
                selected = [r for r in records if stream == "all" or r[1] == stream]
                joined = [(time, s, line, False) for time, s, line in selected]
            elif name == "multiline":
                joined = _join_multiline([(t, s, line) for t, s, line, _ in joined], options)
            else:
                raise Unsupported(f"parser {name}")
        for time, stream, text, was_joined in joined:
            event = {"@timestamp": time, "message": text, "stream": stream,
                     "input": {"type": "filestream"}, "agent": {"type": "filebeat"}, "ecs": {"version": "8.0.0"},
                     "log": {"offset": 0, "file": {"path": f"/var/log/containers/{pod.name}.log"}}}
            if was_joined:
                event["log"]["flags"] = ["multiline"]
            events.append(event)
    shipped = []
    for event in events:
        for processor in config.get("processors", []):
            event = _processor(processor, event, pod)
            if event is None:
                break
        if event is not None:
            shipped.append(event)
    return sorted(shipped, key=lambda e: e["@timestamp"])


def _processor(processor: dict, event: dict, pod: Pod) -> dict | None:
    (name, options), = processor.items()
    if name == "add_kubernetes_metadata":
        dedot = options.get("labels.dedot", True)
        labels = {(fieldrefs.dedot(key) if dedot else key): value for key, value in pod.labels}
        event["kubernetes"] = {"namespace": pod.namespace, "pod": {"name": pod.name}, "labels": labels,
                               "container": {"name": pod.labels[0][1]}}
        return event
    if name == "drop_event":
        return None if _beats_condition(options["when"], event) else event
    raise Unsupported(f"processor {name}")


def _beats_field(event: dict, key: str):
    """A Beats field name against the event: "kubernetes.labels.<key>" (the label key after de-dotting may
    hold "/" and "-", never "."), "kubernetes.namespace"."""
    parts = key.split(".", 2) if key.startswith("kubernetes.labels.") else key.split(".")
    found = event
    for part in parts:
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def _beats_condition(condition: dict, event: dict) -> bool:
    """Beats processor conditions: equals, and, or, not (libbeat conditions)."""
    (kind, operand), = condition.items()
    if kind == "not":
        return not _beats_condition(operand, event)
    if kind == "and":
        return all(_beats_condition(item, event) for item in operand)
    if kind == "or":
        return any(_beats_condition(item, event) for item in operand)
    if kind == "equals":
        return all(_beats_field(event, key) == value for key, value in operand.items())
    raise Unsupported(f"condition {kind}")


def now_cri() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
