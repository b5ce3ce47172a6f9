"""Email end to end: an SMTP server on loopback that keeps what it receives, ``serve``'s app
answering the links in the messages, and a worker that sends through the SMTP provider and
signs its links for that app (the store's own secret, as in production without a setting)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from activities.providers.mailsink import LoopbackController
from activities.providers.smtp import SmtpProvider
from journeys.language.models import Channel
from journeys.links import links_of
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.serving import serving
from tests.helpers.support import free_port, running_worker
from tests.test_smtp import Recorder, settings_for


@contextmanager
def smtp_sink() -> Iterator[tuple[Recorder, LoopbackController]]:
    """An SMTP server on loopback that takes every message, and what it received."""
    handler = Recorder()
    controller = LoopbackController(handler)
    controller.start()
    try:
        yield handler, controller
    finally:
        controller.stop()


@contextmanager
def public_api(env: WorkflowEnvironment, data_dir: Path, queue: str, catalog: Path) -> Iterator[str]:
    """``serve``'s app on a loopback port that is its JOURNEYS_PUBLIC_URL, routing to ``env``."""
    port = free_port()
    settings = Settings(JOURNEYS_DATA_DIR=data_dir, JOURNEYS_TASK_QUEUE=queue, JOURNEYS_DIR=catalog,
                        JOURNEYS_WRITE_KEY="key", JOURNEYS_PUBLIC_URL=f"http://127.0.0.1:{port}",
                        JOURNEYS_LEGACY_IDS=False)

    async def client() -> object:
        return env.client
    with serving(settings, port=port, connect_client=client) as url:
        yield url


@asynccontextmanager
async def mail_worker(env: WorkflowEnvironment, store: Store, queue: str, smtp: LoopbackController,
                      api: str) -> AsyncIterator[None]:
    """A worker whose email goes to ``smtp``, its links to ``api``; the outbox for the rest."""
    email = SmtpProvider(settings_for(smtp.hostname, smtp.port))
    async with running_worker(env.client, store, queue, {**default_providers(), Channel.email: email},
                              links=links_of(store, api)):
        yield
