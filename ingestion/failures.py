"""Whose a routing failure is: the event's (a retry changes nothing), a part a retry may find
back (Temporal or the store down, slow or locked), or anything else.

The HTTP API answers them 400, 503 (with ``Retry-After``) and 500: Segment's libraries drop an
event on a 4xx and send it again on a 5xx, so only what is wrong in the request may be a 4xx.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from temporalio.service import RPCError, RPCStatusCode

from journeys.events import BadKey, Problem
from journeys.language.limits import LimitExceeded

#: Temporal's answers that say "not now": the server is down, busy, or did not answer in time.
_RETRYABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED,
              RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.ABORTED, RPCStatusCode.UNKNOWN}


class NotRouted(Exception):
    """An event (or profile update) not routed within the routing deadline."""


def problem_of(exc: BaseException) -> Problem:
    """The class of a failure (see :data:`journeys.events.Problem`)."""
    if isinstance(exc, BadKey | LimitExceeded):
        return "request"
    if isinstance(exc, RPCError):
        return "unavailable" if exc.status in _RETRYABLE else "internal"
    if isinstance(exc, TimeoutError | NotRouted | ConnectionError | OSError):
        return "unavailable"
    if isinstance(exc, OperationalError | DisconnectionError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return "unavailable"  # a locked SQLite file, a database server down or restarting
    if isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect"):
        return "unavailable"  # a lazily connected client whose server cannot be reached
    return "internal"
