"""The HTTP API on uvicorn, as ``starter.py serve`` runs it (the guard's config), in a thread of
its own (its own event loop, its own Temporal client made in its lifespan)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from ingestion.guard import api_config
from ingestion.http_api import create_app
from journeys.settings import Settings
from tests.helpers.support import free_port


@contextmanager
def serving(settings: Settings, *, port: int | None = None,
            connect_client: Callable[[], Awaitable[Any]] | None = None) -> Iterator[str]:
    """The API for ``settings`` on a loopback port (``port``, else a free one), for the block:
    its base URL. ``connect_client``: its Temporal client (default: from the settings)."""
    port = port or free_port()
    app = create_app(settings, connect_client=connect_client)
    server = uvicorn.Server(api_config(app, settings, host="127.0.0.1", port=port))
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
