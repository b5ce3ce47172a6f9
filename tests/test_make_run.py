"""`make run`: the worker, the embedded dev server and the HTTP API in one command
(``worker.py --dev --serve``), driven over HTTP as an app would, with the key it prints."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import segment.analytics as analytics

from journeys.store.database import Store
from tests.helpers.processes import WorkerProcess
from tests.helpers.support import EXAMPLES, eventually, free_port, taken_port


async def _printed_key(worker: WorkerProcess) -> tuple[str, str]:
    async def printed() -> re.Match[str] | None:
        return re.search(r"HTTP API: (\S+) .*development write key: (\S+)", worker.out.read_text())

    found = await eventually(printed, timeout=20)
    assert found, worker.output()
    return found.group(1), found.group(2)


async def test_make_run_serves_the_api_with_a_development_key(tmp_path: Path) -> None:
    data_dir, api_port = tmp_path / "data", free_port()
    overrides = {"JOURNEYS_DIR": str(EXAMPLES)}
    worker = WorkerProcess(data_dir, free_port(), "run", overrides=overrides,
                           args=("--serve", f"127.0.0.1:{api_port}"))
    try:
        await worker.ready()
        url, key = await _printed_key(worker)
        assert url == f"http://127.0.0.1:{api_port}" and key.startswith("dev-")
        assert (data_dir / "dev-write-key").stat().st_mode & 0o077 == 0  # the owner's only
        event = {"userId": "run-ada", "event": "Added To Cart", "messageId": "run-1",
                 "properties": {"product_name": "iPhone 14", "price": "$799",
                                "product_url": "https://shop.example/iphone-14"}}
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.post("/v1/track", json=event)).status_code == 401
            answer = await http.post("/v1/track", json=event, auth=(key, ""))
            assert answer.json() == {"success": True}, answer.text
        # Segment's own library, pointed at it with the printed key.
        client = analytics.Client(key, host=url, sync_mode=True)
        client.track(user_id="run-grace", event="Added To Cart", message_id="run-2",
                     properties={"product_name": "iPad", "price": "$599",
                                 "product_url": "https://shop.example/ipad"})
        store = Store(f"sqlite:///{data_dir / 'journeys.db'}")

        async def pushed() -> bool:
            users = {row.user_id for row in store.outbox_list() if row.node_id == "push-reminder"}
            return {"run-ada", "run-grace"} <= users

        # The engagement-after-action example pushes at once (the cart journey waits an hour).
        assert await eventually(pushed, timeout=30), store.outbox_list()
        assert await worker.stop(signal.SIGTERM) == 0, worker.output()
        events = worker.events()
        assert "HTTP API started" in events and events.index("worker shutting down") < events.index(
            "shutdown complete")
    finally:
        worker.kill()

    again = WorkerProcess(data_dir, free_port(), "again", overrides=overrides,
                          args=("--serve", f"127.0.0.1:{api_port}"))
    try:
        await again.ready()
        assert (await _printed_key(again))[1] == key  # the same key after a restart
        assert await again.stop(signal.SIGINT) == 0, again.output()
    finally:
        again.kill()


async def test_a_taken_api_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with taken_port() as port:
        worker = WorkerProcess(tmp_path / "data", free_port(), "taken", args=("--serve", f"127.0.0.1:{port}"),
                               overrides={"JOURNEYS_DIR": str(EXAMPLES)})
        code = await worker.exit_code(timeout=30)
    assert code == 2, worker.output()
    assert f"--serve: cannot serve the HTTP API on 127.0.0.1:{port}" in worker.err.read_text()
