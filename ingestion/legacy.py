"""Release 0.1's workflow ids (``journey-<journey>-<user>``): a user's entry under them.

Such an id is ambiguous (``journey-welcome-back-ada`` may be either welcome/back-ada or
welcome-back/ada): only its search attributes say whose it is. This code never makes new ones;
a namespace without any (asked once per router) costs nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from journeys.events import legacy_workflow_id
from workflows.models import JOURNEY_ID, USER_ID

#: Release 0.1's workflow ids begin so; today's begin with "journey/".
LEGACY_PREFIX = "journey-"


@dataclass
class LegacyIds:
    """What a router knows of the namespace's 0.1 ids: whether there are any (asked once)."""

    _any: bool | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def entry(self, client: Client, journey_id: str, user_id: str
                    ) -> tuple[WorkflowHandle | None, bool]:
        """This journey's entry of release 0.1 for exactly this user, if any, and whether it runs."""
        if not await self._exists(client):
            return None, False
        handle = client.get_workflow_handle(legacy_workflow_id(journey_id, user_id))
        description = await describe(handle)
        if description is None or not belongs_to(description, journey_id, user_id):
            return None, False
        return handle, description.status == WorkflowExecutionStatus.RUNNING

    async def _exists(self, client: Client) -> bool:
        async with self._lock:
            if self._any is None:
                try:
                    found = await client.count_workflows(f'WorkflowId STARTS_WITH "{LEGACY_PREFIX}"')
                    self._any = found.count > 0
                except RPCError:  # a server without visibility counts: look at every entry
                    self._any = True
            return self._any


def belongs_to(description: WorkflowExecutionDescription, journey_id: str, user_id: str) -> bool:
    """Is this workflow ``journey_id``'s journey of ``user_id``, by its search attributes?"""
    attributes = description.typed_search_attributes
    return attributes.get(USER_ID) == user_id and attributes.get(JOURNEY_ID) == journey_id


async def describe(handle: WorkflowHandle) -> WorkflowExecutionDescription | None:
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
