"""Exactly once, in effect: the worker dies (SIGKILL) while its webhook is in flight.

`python worker.py --dev` sends a journey's webhook to a real receiver on loopback, which takes
the request and holds its answer; the worker is killed; a new worker on the same data dir
retries once the attempt's time is up, with the same Idempotency-Key, and the outbox records
one delivered message.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from ingestion.router import Router
from journeys.events import Event
from journeys.language.models import Journey
from journeys.store.database import Store
from tests.helpers.processes import TASK_QUEUE, WorkerProcess
from tests.helpers.support import free_port
from tests.helpers.vendors import Answer, WebhookReceiver, serving
from workflows.models import JourneyState

SECRET = "kill-test-secret"


def _journey(url: str) -> Journey:
    return Journey.model_validate({
        "id": "order-hook", "name": "Order webhook", "entry": "ordered",
        "nodes": [
            {"id": "ordered", "type": "action", "event": "Ordered", "next": "notify"},
            {"id": "notify", "type": "engagement", "channel": "webhook",
             "message": {"url": url, "body": '{"order": "{{ event.order }}"}'}}]})


async def test_a_worker_killed_mid_send_delivers_once(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    settings = {"JOURNEYS_WEBHOOK_SECRET": SECRET, "JOURNEYS_SEND_TIMEOUT": "1"}
    with serving(WebhookReceiver(SECRET)) as receiver:
        receiver.script.append(Answer(200, {"ok": True}, delay=8))  # taken, answered too late
        journey = _journey(f"{receiver.url}/orders")
        first = WorkerProcess(data_dir, port, "first", overrides=settings)
        try:
            client = await first.ready()
            router = Router(client, TASK_QUEUE, send_timeout=1.0)
            event = Event(id="order-1", name="Ordered", user_id="kim", properties={"order": "A-17"},
                          time=datetime.now(UTC))
            [routed] = await router.route_event([journey], event)
            deadline = time.monotonic() + 20
            while not receiver.received and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert receiver.received, first.output()
            first.process.send_signal(signal.SIGKILL)  # mid-send: the receiver holds its answer
            first.process.wait(10)
        finally:
            first.kill()
        second = WorkerProcess(data_dir, port, "second", overrides=settings)
        try:
            client = await second.ready()
            handle = client.get_workflow_handle(routed.workflow_id, result_type=JourneyState)
            state = await asyncio.wait_for(handle.result(), 60)
            assert await second.stop(signal.SIGTERM) == 0, second.output()
        finally:
            second.kill()
    assert [(m.node_id, m.status) for m in state.messages] == [("notify", "delivered")]
    keys = {r.headers["idempotency-key"] for r in receiver.received}
    assert len(receiver.received) == 2 and len(keys) == 1  # the retry is the same message
    store = Store(f"sqlite:///{data_dir / 'journeys.db'}")
    [row] = store.outbox_list(user_id="kim")
    assert (row.status, row.provider, row.idempotency_key) == ("delivered", "webhook", keys.pop())
    assert row.provider_message_id == "req-1"  # the second request's id: the first never answered
    store.engine.dispose()
