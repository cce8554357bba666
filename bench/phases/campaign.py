"""The campaign replay (``make campaign``, devtools/campaign.py) as a bench phase: the whole ``make run``
stack on a data directory of its own (PostgreSQL primary + replica, NATS JetStream, the queue-worker, the
rollup worker, both functions behind the local gateway), a quiet stream, a burst of 20,000 comments
(2,000 with ``--quick``) by 64 clients through ``/async-function/ner-processor`` with 1 % invalid ones,
quiet again; no fault (the fault runs are ``make campaign FAULT=...``). Figures: accepted, persisted once,
duplicates, dead letters, lost, queue depth, drain time, comment→dashboard latency, the timeline plot."""

from __future__ import annotations

from bench.common import log
from devtools import campaign, campaign_report


def run(ctx) -> dict:
    config = campaign.CampaignConfig(
        data_dir=ctx.work / "campaign", comments=2_000 if ctx.quick else 20_000,
        quiet_s=5.0 if ctx.quick else 15.0, progress=False)
    log(f"campaign replay: {config.comments:,} comments in the burst by {config.clients} clients through "
        "/async-function/ner-processor (make run stack of its own)")
    summary = campaign.run(config)
    log("campaign: " + campaign_report.text(summary).replace("\n", "; "))
    return summary


def section(results: dict) -> str:
    """The markdown section: empty when the phase did not run, the error when it failed."""
    summary, error = results.get("campaign"), results["errors"].get("campaign")
    if summary is None and not error:
        return ""
    head = "\n\n## Campaign replay\n\n`make campaign` as a phase: see docs/operations.md, \"The replay\".\n\n"
    if summary is None:
        return head + f"Not measured: {error}.\n"
    return head + "```\n" + campaign_report.text(summary) + "\n```\n"
