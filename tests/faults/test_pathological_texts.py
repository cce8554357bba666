"""Hostile texts under ``make faults``: many of them (runs of symbols, punctuation, emoji, combining
marks, mixed scripts, up to MAX_TEXT_CHARS) against ONE real ner-processor process with the default
limits, each watched by back-to-back readiness and /metrics requests.

Figures (docs/operations.md, Failure behaviour): texts sent, statuses, slowest answer, slowest readiness
and /metrics answer meanwhile, hangs (no answer within 60 s), stored-but-unanswered (a document on the
primary without a 2xx).
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from tests.faults.support import report
from tests.pathological_texts import SLOWEST, check_answer, hostile_texts, send_watching, stored_rows

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

ANSWER_S = 20.0  # REQUEST_TIMEOUT_S: never a 504. Measured worst 10.0 s (30,000 tokens, shared 2-core machine)
PROBE_S = 1.0
OUTCOMES: list[dict] = []


def _send(ner_server, admin_dsn, text: str, plain: bool = False) -> None:
    request_id = f"patho-{uuid.uuid4().hex[:12]}"
    outcome = send_watching(ner_server, text, request_id, plain=plain)
    outcome.update(chars=len(text), stored=stored_rows(admin_dsn, request_id)[0])
    OUTCOMES.append(outcome)
    assert outcome["elapsed"] < ANSWER_S, outcome
    assert outcome["slowest_ready"] < PROBE_S and outcome["slowest_metrics"] < PROBE_S, outcome
    check_answer(text, outcome, admin_dsn, request_id)


@pytest.mark.parametrize("name", list(SLOWEST))
def test_slowest_known_texts(ner_server, admin_dsn, name):
    _send(ner_server, admin_dsn, SLOWEST[name], plain=name.endswith("x !"))


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=hostile_texts())
def test_generated_hostile_texts(ner_server, admin_dsn, text):
    _send(ner_server, admin_dsn, text)


def test_pathological_texts_figures():
    assert OUTCOMES, "runs after the two tests above"
    hangs = [o for o in OUTCOMES if o["status"] == "hang"]
    unanswered_but_stored = [o for o in OUTCOMES if o["status"] != 200 and o["stored"]]
    slowest = max(OUTCOMES, key=lambda o: o["elapsed"])
    report("pathological_texts", sent=len(OUTCOMES), statuses=dict(Counter(o["status"] for o in OUTCOMES)),
           max_chars=max(o["chars"] for o in OUTCOMES), slowest_answer_s=round(slowest["elapsed"], 2),
           slowest_answer_chars=slowest["chars"],
           slowest_ready_s=round(max(o["slowest_ready"] for o in OUTCOMES), 3),
           slowest_metrics_s=round(max(o["slowest_metrics"] for o in OUTCOMES), 3),
           probes=sum(o["probes"] for o in OUTCOMES), hangs=len(hangs),
           stored_but_unanswered=len(unanswered_but_stored))
    assert hangs == [] and unanswered_but_stored == []
