"""The queue-worker's delivery policy read from stack.yml, and what one attempt's answer means
(devtools/queueworker/policy.py, worker.decide): the pure part of OpenFaaS Standard's retry semantics."""

from __future__ import annotations

import email.utils
import time

import pytest

from devtools.gateway import read_stack
from devtools.gateway.stack import FunctionSpec
from devtools.processes import REPO
from devtools.queueworker import Delivery, DeliveryPolicy, decide, parse_go_duration
from devtools.queueworker.policy import DEFAULT_ATTEMPTS, DEFAULT_CODES, parse_retry_after


def spec(annotations: dict | None = None, environment: dict | None = None) -> FunctionSpec:
    return FunctionSpec(name="fn", image="x:1", environment=environment or {}, labels={},
                        annotations=annotations or {}, namespace="openfaas-fn")


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("2", 2), ("1h", 3600)])
def test_go_durations_are_read_as_seconds(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "5 s", "1x", "-3s"])
def test_anything_but_a_go_duration_is_refused(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_the_stack_annotations_set_attempts_codes_waits_and_max_inflight():
    policy = DeliveryPolicy.from_spec(spec({"com.openfaas.retry.attempts": "12",
                                            "com.openfaas.retry.codes": "429,503",
                                            "com.openfaas.retry.min_wait": "5s", "com.openfaas.retry.max_wait": "1m"},
                                           {"max_inflight": "64"}))
    assert (policy.attempts, policy.codes, policy.min_wait_s, policy.max_wait_s, policy.max_inflight) == (
        12, frozenset({429, 503}), 5.0, 60.0, 64)


def test_missing_or_invalid_annotations_fall_back_to_the_queue_worker_defaults():
    policy = DeliveryPolicy.from_spec(spec({"com.openfaas.retry.attempts": "many", "com.openfaas.retry.codes": "x",
                                            "com.openfaas.retry.min_wait": "soon"}), default_max_inflight=3)
    assert policy.attempts == DEFAULT_ATTEMPTS and policy.codes == DEFAULT_CODES
    assert policy.min_wait_s == DeliveryPolicy().min_wait_s and policy.max_inflight == 3


def test_backoff_doubles_from_min_wait_and_stops_at_max_wait():
    policy = DeliveryPolicy(attempts=8, min_wait_s=5, max_wait_s=60)
    assert [policy.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_retry_after_replaces_the_backoff_on_429_and_503_but_never_below_min_wait():
    policy = DeliveryPolicy(min_wait_s=5, max_wait_s=60)
    assert policy.delay(4, "30", status=429) == 30
    assert policy.delay(4, "2", status=503) == 5
    assert policy.delay(4, "30", status=500) == 40  # not a Retry-After status: the backoff
    date = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 17 <= policy.delay(1, date, status=503) <= 21
    assert parse_retry_after("soon") is None


def test_the_retry_window_is_the_sum_of_the_waits_between_attempts():
    policy = DeliveryPolicy(attempts=4, min_wait_s=5, max_wait_s=60)
    assert policy.window() == 5 + 10 + 20
    assert policy.window(retry_after_s=2) == 3 * 5


def test_a_2xx_succeeds_and_a_retried_status_is_retried_until_the_last_attempt():
    policy = DeliveryPolicy(attempts=3, codes=frozenset({503}), min_wait_s=1, max_wait_s=10)
    assert decide(policy, 1, Delivery(200, {}, b"", 0.1)).action == "succeeded"
    first = decide(policy, 1, Delivery(503, {"Retry-After": "4"}, b"", 0.1))
    assert (first.action, first.delay_s) == ("retry", 4)
    last = decide(policy, 3, Delivery(503, {}, b"", 0.1))
    assert (last.action, last.reason) == ("failed", "retries_exhausted")


def test_a_4xx_that_is_not_retried_fails_at_once_as_rejected():
    policy = DeliveryPolicy(attempts=10, codes=frozenset({429, 503}))
    for status in (400, 409, 413, 422):
        decision = decide(policy, 1, Delivery(status, {}, b"", 0.1))
        assert (decision.action, decision.reason) == ("failed", "rejected")


def test_no_answer_and_openfaas_component_errors_are_retried_whatever_the_codes():
    policy = DeliveryPolicy(attempts=5, codes=frozenset({429}), min_wait_s=1)
    assert decide(policy, 1, Delivery(0, {}, b"", 0.1, error="ClientConnectorError")).action == "retry"
    assert decide(policy, 1, Delivery(502, {}, b"", 0.1, internal=True)).action == "retry"
    assert decide(policy, 1, Delivery(502, {}, b"", 0.1)).action == "failed"


def test_ack_wait_outlasts_one_delivery():
    policy = DeliveryPolicy(timeout_s=60)
    assert policy.ack_wait_s > policy.timeout_s


def test_the_real_stack_gives_ner_processor_a_window_longer_than_a_20_second_primary_outage():
    ner = next(s for s in read_stack(REPO / "stack.yml") if s.name == "ner-processor")
    policy = DeliveryPolicy.from_spec(ner)
    assert policy.window(retry_after_s=2) > 2 * 20
    assert {429, 503}.issubset(policy.codes) and not {400, 409, 413, 415, 422} & policy.codes
