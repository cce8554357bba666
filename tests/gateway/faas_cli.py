"""faas-cli 0.18.12's requests to a gateway and how it decodes the answers (Go structs of
faas-provider/types and logs, as in the gateway's swagger): what the local gateway is held to.

``decode_*`` raise AssertionError where Go's encoding/json would fail or mis-read a field: a wrong JSON
type, a negative or fractional replica count (uint64), a timestamp that is not RFC 3339 (time.Time).
"""

from __future__ import annotations

import http.client
import json
import re
from datetime import datetime

USER_AGENT = "faas-cli/0.18.12"
NAMESPACE = "openfaas-fn"
# Go's net/http client adds this to every request unless the caller sets it.
GO_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """One request as faas-cli's Go client sends it; returns (status, lower-case headers, raw body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**GO_HEADERS, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def invoke(url: str, name: str, body: bytes, *, content_type: str = "text/plain", asynchronous: bool = False,
           headers: dict | None = None):
    """`faas-cli invoke NAME [--async] [--content-type T]`: POST /[async-]function/NAME.openfaas-fn."""
    prefix = "async-function" if asynchronous else "function"
    return request(url, "POST", f"/{prefix}/{name}.{NAMESPACE}", body,
                   {"Content-Type": content_type, **(headers or {})})


def _is_rfc3339(value) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


def _string_map(value, field: str, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), \
        f"{field} must be an object of strings, got {value!r}"


def _uint(value, field: str) -> None:
    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{field} must be a uint64: {value!r}"


def decode_function_status(obj: dict) -> dict:
    """types.FunctionStatus (swagger FunctionStatus); returns it unchanged when Go would decode it."""
    assert isinstance(obj, dict)
    assert isinstance(obj["name"], str) and obj["name"] and isinstance(obj["image"], str)
    for key in ("namespace", "envProcess"):
        if key in obj:
            assert isinstance(obj[key], str), key
    for key in ("replicas", "availableReplicas"):
        if key in obj:
            _uint(obj[key], key)
    if "invocationCount" in obj:
        assert isinstance(obj["invocationCount"], int | float) and not isinstance(obj["invocationCount"], bool)
    for key in ("labels", "annotations"):
        if key in obj:
            _string_map(obj[key], key, nullable=True)
    if "envVars" in obj:
        _string_map(obj["envVars"], "envVars")
    for key in ("constraints", "secrets"):
        if key in obj:
            assert isinstance(obj[key], list) and all(isinstance(x, str) for x in obj[key]), key
    for key in ("limits", "requests"):
        if obj.get(key) is not None:
            assert set(obj[key]) <= {"memory", "cpu"}, key
            _string_map(obj[key], key)
    if "readOnlyRootFilesystem" in obj:
        assert isinstance(obj["readOnlyRootFilesystem"], bool)
    if "createdAt" in obj:
        assert _is_rfc3339(obj["createdAt"]), f"createdAt {obj['createdAt']!r} is not RFC 3339"
    if obj.get("usage") is not None:
        for key, value in obj["usage"].items():
            assert key in ("cpu", "totalMemoryBytes") and isinstance(value, int | float), key
    return obj


def decode_list(body: bytes) -> list[dict]:
    """`faas-cli list`: []types.FunctionStatus."""
    items = json.loads(body)
    assert isinstance(items, list)
    return [decode_function_status(item) for item in items]


def decode_info(body: bytes) -> dict:
    """`faas-cli version --gateway`: swagger GatewayInfo (provider, version, arch)."""
    info = json.loads(body)
    assert isinstance(info["arch"], str)
    for version in (info["version"], info["provider"]["version"]):
        assert isinstance(version["sha"], str) and isinstance(version["release"], str)
    assert isinstance(info["provider"]["provider"], str) and isinstance(info["provider"]["orchestration"], str)
    return info


def decode_logs(body: bytes) -> list[dict]:
    """`faas-cli logs`: a stream of logs.Message decoded one JSON value after another."""
    decoder, text, pos, out = json.JSONDecoder(), body.decode("utf-8"), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        msg, pos = decoder.raw_decode(text, pos)
        assert set(msg) == {"name", "namespace", "instance", "timestamp", "text"}, msg
        assert all(isinstance(msg[k], str) for k in msg)
        assert _is_rfc3339(msg["timestamp"]), msg["timestamp"]
        out.append(msg)
    return out
