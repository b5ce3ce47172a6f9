"""The HTTP API on uvicorn, as ``starter.py serve`` runs it (the guard's config), in a thread of
its own (its own event loop, its own Temporal client made in its lifespan)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from ingestion.guard import api_config
from ingestion.http_api import create_app
from journeys.settings import Settings
from tests.helpers.support import free_port


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API for ``settings`` on a loopback port, for the block: its base URL."""
    port = free_port()
    server = uvicorn.Server(api_config(create_app(settings), settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):  # until it answers
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not thread.is_alive():
            raise RuntimeError("the API did not start")
        threading.Event().wait(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
