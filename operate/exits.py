"""``starter.py exit``: take a user (or everyone in a journey) out, through the journey's
``exit`` update, which returns once no message of that journey can go out any more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from journeys.inputs import described
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.validation.catalog import Catalog
from operate.listing import quoted
from operate.status import user_status
from workflows.exits import ExitRequest, ExitResult

#: Exits in flight at once for ``--all`` (each waits for its journey's answer).
CONCURRENCY = 32


class Exited(BaseModel):
    workflow_id: str
    journey_id: str
    outcome: str  # "exited", or why not: "not running", "already leaving: ...", "failed"
    node: str | None = None
    reason: str | None = None
    warning: str | None = None  # the journey left the catalog (status says the same)
    error: str | None = None  # "failed": what the server answered (the user may still be in)


async def exit_one(client: Client, workflow_id: str, journey_id: str, reason: str) -> Exited:
    """One journey instance out; what happened, in words."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        result = await handle.execute_update("exit", ExitRequest(reason=reason), result_type=ExitResult)
    except WorkflowUpdateFailedError as exc:  # the validator refused: it is leaving anyway
        cause = exc.cause.message if exc.cause and hasattr(exc.cause, "message") else str(exc)
        return Exited(workflow_id=workflow_id, journey_id=journey_id, outcome=cause)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # ended meanwhile, or never was
            return Exited(workflow_id=workflow_id, journey_id=journey_id,
                          outcome=f"not running ({exc.message})")
        return _failed(workflow_id, journey_id, exc)
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:  # no answer in time: still in?
        return _failed(workflow_id, journey_id, exc)
    return Exited(workflow_id=workflow_id, journey_id=journey_id, outcome="exited",
                  node=result.node, reason=result.reason)


def _failed(workflow_id: str, journey_id: str, exc: Exception) -> Exited:
    """The server did not take the exit: said as such, never as "not running"."""
    return Exited(workflow_id=workflow_id, journey_id=journey_id, outcome="failed",
                  error=described(exc))


async def exit_user(client: Client, journeys: Sequence[Journey], user_id: str, task_queue: str,
                    store: Store | None, reason: str, *, legacy_ids: bool = True,
                    catalog: Catalog | None = None, journey_id: str | None = None) -> list[Exited]:
    """Every running journey (each keyed instance, and those under release 0.1's ids) of
    ``user_id`` among ``journeys``, and with ``catalog`` those that left it: the ones ``status``
    shows (only ``journey_id``'s, if given)."""
    rows = await user_status(client, journeys, user_id, task_queue, store=store,
                             legacy_ids=legacy_ids, catalog=catalog)
    running = [r for r in rows if r.status == "running" and journey_id in (None, r.journey_id)]
    done = await asyncio.gather(*(
        exit_one(client, r.workflow_id, r.journey_id, reason) for r in running))
    return [d.model_copy(update={"warning": r.warning}) for d, r in zip(done, running, strict=True)]


async def exit_all(client: Client, journey_id: str, reason: str,
                   progress: Callable[[int, int], None] | None = None) -> list[Exited]:
    """Everyone running in ``journey_id``, through visibility, paged. Passes again until a
    pass finds nobody new (visibility lags a start by a moment)."""
    done: dict[str, Exited] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(workflow_id: str) -> None:
        async with gate:
            done[workflow_id] = await exit_one(client, workflow_id, journey_id, reason)
        if progress:
            progress(len(done), total)

    total = 0
    for _ in range(3):
        query = f'JourneyId = "{quoted(journey_id)}" AND ExecutionStatus = "Running"'
        found = [e.id async for e in client.list_workflows(query, page_size=500) if e.id not in done]
        if not found:
            break
        total += len(found)
        await asyncio.gather(*(one(wid) for wid in found))
    return list(done.values())
