"""Bounded loopback load through the gateway to the real ner-processor: 256 closed-loop clients
connecting at once, for 60 s. Every request must get an HTTP answer with a JSON body: no reset, no
refused or stalled connect (the listen backlog absorbs the burst), no timeout, no HTML.

Marked slow (about 75 s): part of `make test`, not of `make test-quick`; alone:
`pytest -m slow tests/gateway/test_gateway_load.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.common import run_module_json
from devtools.gateway import Gateway, read_stack
from devtools.processes import REPO, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 256
DURATION_S = 60.0


def test_256_clients_for_60_s_get_only_json_answers_and_no_connection_errors(pg_cluster, tmp_path):
    texts = [json.loads(line)["text"] for line in
             (REPO / "samples" / "comments.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    gw = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=pg_cluster.secrets_dir, log_dir=Path(tmp_path),
                 port=free_port())
    gw.start()
    try:
        result = run_module_json("bench.gateway", {
            "command": "load", "url": gw.url, "path": "/function/ner-processor.openfaas-fn", "texts": texts,
            "clients": CLIENTS, "duration_s": DURATION_S, "timeout_s": 60.0}, timeout=DURATION_S + 180)
    finally:
        gw.stop()
    print(f"\n{CLIENTS} clients x {DURATION_S:g} s through the gateway: {json.dumps(result)}")
    assert result["errors"] == {}, result
    assert result["non_json"] == 0, result["non_json_samples"]
    assert result["requests"] >= CLIENTS
    assert set(result["statuses"]) <= {"200", "429"}, result["statuses"]  # 429: the function's own JSON
