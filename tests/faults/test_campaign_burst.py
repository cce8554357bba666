"""The campaign burst against a whole `make run` stack (devtools.campaign): 20,000 comments from 64
clients through /async-function/ner-processor into one ner-processor process, then the same burst with
the primary stalled or stopped for 20 s mid-drain, with the stack restarted mid-drain, and with callbacks
of which 10 % are unreachable. Soak runs (minutes each): `pytest -m soak -s tests/faults/test_campaign_burst.py`;
each prints its summary and files its figures in the fault report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from devtools.campaign import CampaignConfig, run
from devtools.campaign_report import text
from tests.faults import support

pytestmark = [pytest.mark.soak, pytest.mark.faults, pytest.mark.integration]

BURST = 20_000


@pytest.fixture(scope="module")
def campaign_dir():
    """One make run data folder for the module (each run's comments have ids of their own)."""
    with tempfile.TemporaryDirectory(prefix="nlp-campaign-") as tmp:
        yield Path(tmp)


def replay(campaign_dir: Path, name: str, **options) -> dict:
    config = CampaignConfig(data_dir=campaign_dir, out_dir=campaign_dir / "reports" / name, comments=BURST,
                            clients=64, quiet_s=10, progress=False, **options)
    summary = run(config)
    print(f"\n== {name}\n{text(summary)}")
    support.report(name, accepted=summary["accepted"], within_s=summary["burst"]["accepted_within_s"],
                   persisted=summary["persisted_once"], dead=summary["dead_letters_total"], lost=summary["lost"],
                   duplicates=summary["duplicates_on_redelivery"], max_depth=summary["max_queue_depth"],
                   drain_s=summary["drain_s"])
    return summary


def assert_nothing_lost(summary: dict) -> None:
    assert summary["accepted"] == summary["offered"]
    assert summary["lost"] == 0, summary["lost_ids"]
    assert summary["invalid_persisted"] == 0
    assert summary["poison_letters_open_422_with_body"] == f"{BURST // 100}/{BURST // 100}"
    # every dead letter is one of the poison comments: none was caused by an outage
    assert summary["dead_lettered"] == {"rejected/422": BURST // 100}


def test_a_burst_of_20000_from_64_clients_is_accepted_within_20_s_and_drains_with_nothing_lost(campaign_dir):
    summary = replay(campaign_dir, "campaign_burst")
    assert summary["burst"]["accepted_within_s"] <= 20
    assert_nothing_lost(summary)


@pytest.mark.parametrize("fault", ["stall-primary", "stop-primary"])
def test_the_burst_rides_out_the_primary_away_for_20_s_mid_drain(campaign_dir, fault):
    summary = replay(campaign_dir, f"campaign_{fault}", fault=fault, fault_seconds=20, fault_at=0.3)
    assert summary["timeline"]["faults"], "the fault ran"
    assert_nothing_lost(summary)


def test_the_burst_survives_make_run_stopped_and_started_mid_drain(campaign_dir):
    summary = replay(campaign_dir, "campaign_restart", fault="restart-stack", fault_at=0.4)
    (fault,) = summary["timeline"]["faults"]
    assert 0.25 <= fault["persisted_fraction"] <= 0.75
    assert_nothing_lost(summary)


def test_unreachable_callback_urls_do_not_slow_the_drain(campaign_dir):
    plain = replay(campaign_dir, "campaign_no_callbacks")
    with_callbacks = replay(campaign_dir, "campaign_callbacks", callback_fraction=1.0,
                            unreachable_callback_fraction=0.1)
    rate = lambda s: s["persisted_once"] / s["drain_s"]  # noqa: E731
    assert rate(with_callbacks) >= 0.9 * rate(plain)
    callbacks = with_callbacks["callbacks"]
    assert callbacks["exactly_once"] == callbacks["expected"] and callbacks["more_than_once"] == 0
