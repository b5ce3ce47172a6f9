"""The project's metrics and the SDK's on one Prometheus endpoint, scraped from a real worker.

``python worker.py --dev`` with JOURNEYS_METRICS_ADDRESS runs one user's journey (a push through
the outbox, an email through the dev mail sink); the scrape then has journeys_entered,
journeys_exited, journeys_messages by channel and status and the send latency histogram, next
to the SDK's own temporal_* metrics.
"""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from ingestion.router import route_event
from journeys.events import Event
from journeys.language.loader import load_file
from journeys.store.database import Store
from telemetry.logs import ENTERED, EXITED, MESSAGES, SEND_LATENCY
from tests.helpers.processes import TASK_QUEUE, WorkerProcess
from tests.helpers.support import ROOT, eventually, free_port
from workflows.models import JourneyState

USER = "metrics-user"
_SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Prometheus' text format: (name, labels, value) for each sample line."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for n, found, v in samples if n == name and labels.items() <= found.items())


async def test_worker_serves_project_and_sdk_metrics_on_one_endpoint(tmp_path: Path) -> None:
    data_dir, metrics_port = tmp_path / "data", free_port()
    loaded = load_file(ROOT / "examples" / "engagement-after-action.yaml")
    assert loaded.journey is not None, loaded.problems
    journey = loaded.journey
    worker = WorkerProcess(data_dir, free_port(), "metrics", metrics_port)
    try:
        client = await worker.ready(timeout=30)
        Store(f"sqlite:///{data_dir / 'journeys.db'}").update_profile(USER, {"email": "m@example.com"})
        event = Event(id="evt-metrics-1", name="Added To Cart", user_id=USER, time=datetime.now(UTC),
                      properties={"product_name": "iPhone 14", "price": "$799",
                                  "product_url": "https://shop.example/iphone-14"})
        routed = await route_event(client, [journey], event, TASK_QUEUE)
        assert [r.action for r in routed] == ["started"]
        handle = client.get_workflow_handle(routed[0].workflow_id, result_type=JourneyState)
        state = await asyncio.wait_for(handle.result(), 20)
        assert [m.status for m in state.messages] == ["delivered", "delivered"]

        url = f"http://127.0.0.1:{metrics_port}/metrics"

        async def scraped() -> Samples:
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
            samples = parse(text)
            # Both exported: the journey's exit is counted before the run completes, the
            # SDK's completion after it (each on the exporter's interval).
            done = value(samples, EXITED, journey_id=journey.id) and value(
                samples, "temporal_workflow_completed", task_queue=TASK_QUEUE)
            return samples if done else []

        samples = await eventually(scraped)  # metrics are exported on an interval
        assert samples, "journeys_exited or temporal_workflow_completed never showed on the endpoint"
        assert await worker.stop(signal.SIGTERM) == 0, worker.output()
    finally:
        worker.kill()

    assert value(samples, ENTERED, journey_id=journey.id) == 1
    assert value(samples, EXITED, journey_id=journey.id, kind="completed") == 1
    assert value(samples, MESSAGES, channel="push", status="kept") == 1  # no vendor
    assert value(samples, MESSAGES, channel="email", status="delivered") == 1
    assert value(samples, f"{SEND_LATENCY}_count", channel="push", provider="outbox") == 1
    assert value(samples, f"{SEND_LATENCY}_count", channel="email", provider="smtp") == 1
    buckets = [labels["le"] for name, labels, _ in samples if name == f"{SEND_LATENCY}_bucket"]
    assert "+Inf" in buckets and len(buckets) > 2
    # The SDK's own, on the same endpoint, with the task queue of the worker.
    assert value(samples, "temporal_workflow_completed", task_queue=TASK_QUEUE) >= 1
    assert any(name.startswith("temporal_request") for name, _, _ in samples)
    # The SDK's meter adds where each was recorded.
    assert value(samples, MESSAGES, channel="push", activity_type="send_message",
                 task_queue=TASK_QUEUE) == 1
    assert value(samples, ENTERED, workflow_type="JourneyWorkflow", namespace="default") == 1


def test_parse_reads_labels_with_escapes() -> None:
    samples = parse('# HELP x y\nx{a="1",b="q\\"r"} 2\nz 3.5\n')
    assert samples == [("x", {"a": "1", "b": 'q\\"r'}, 2.0), ("z", {}, 3.5)]
