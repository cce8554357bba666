"""What stack.yml promises a campaign: queue-depth scaling, retries that outlast a primary outage,
max_inflight that a busy pod keeps without leaving its Service (docs/operations.md, "Campaign sizing")."""

from __future__ import annotations

from devtools.gateway import read_stack
from devtools.queueworker import DeliveryPolicy
from functions.runtime.settings import Settings
from tests.deploy.conftest import ROOT

# The longest primary outage the campaign replay rides out (stalled or stopped, tests/faults), doubled:
# the retry window must outlast it even when every answer asks for the function's short Retry-After.
PRIMARY_OUTAGE_S = 20.0
MARGIN = 2.0
NOT_RETRIED = {400, 405, 409, 413, 415, 422}


def ner_processor():
    return next(spec for spec in read_stack(ROOT / "stack.yml") if spec.name == "ner-processor")


def test_ner_processor_scales_on_its_queue_depth_with_a_positive_target():
    labels = ner_processor().labels
    assert labels["com.openfaas.scale.type"] == "queue"
    assert int(labels["com.openfaas.scale.target"]) > 0
    assert 0 < float(labels["com.openfaas.scale.target-proportion"]) <= 1


def test_the_retry_window_outlasts_a_primary_outage_with_margin_even_with_short_retry_after():
    spec = ner_processor()
    policy = DeliveryPolicy.from_spec(spec)
    retry_after = Settings.from_env(spec.environment).retry_after_s
    assert policy.window(retry_after_s=retry_after) >= MARGIN * PRIMARY_OUTAGE_S
    assert policy.window() >= policy.window(retry_after_s=retry_after)


def test_caller_mistakes_are_not_retried_and_overload_and_outages_are():
    codes = DeliveryPolicy.from_spec(ner_processor()).codes
    assert not codes & NOT_RETRIED
    assert {429, 502, 503, 504} <= codes


def test_every_retry_annotation_is_valid_so_none_falls_back_to_a_default():
    notes = ner_processor().annotations
    policy = DeliveryPolicy.from_spec(ner_processor())
    assert policy.attempts == int(notes["com.openfaas.retry.attempts"])
    assert policy.codes == {int(c) for c in notes["com.openfaas.retry.codes"].split(",")}
    assert policy.min_wait_s < policy.max_wait_s


def test_max_inflight_is_set_at_most_the_handler_threads_and_readiness_is_the_functions_own():
    spec = ner_processor()
    settings = Settings.from_env(spec.environment)
    max_inflight = int(spec.environment["max_inflight"])
    assert 0 < max_inflight <= settings.handler_threads
    assert spec.annotations["com.openfaas.ready.http.path"] == settings.ready_path


def test_ack_wait_of_the_local_queue_worker_outlasts_the_function_timeout():
    spec = ner_processor()
    settings = Settings.from_env(spec.environment)
    assert DeliveryPolicy.from_spec(spec).ack_wait_s > settings.request_timeout_s
