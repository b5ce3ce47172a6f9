"""An operator's exit: the ``exit`` update's request and answer (``starter.py exit``)."""

from __future__ import annotations

from pydantic import BaseModel


class ExitRequest(BaseModel):
    reason: str = "no reason given"


class ExitResult(BaseModel):
    node: str | None  # where the user was
    reason: str  # what status, the outbox and the UI show
