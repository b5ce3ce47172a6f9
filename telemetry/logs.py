"""Logs and metrics: one JSON object per line (structlog and stdlib loggers alike; readable lines
on a terminal), each line of a journey bound with its ids, and the project's metrics on the
SDK's meter.

Ids are bound in one place for each kind of code: activities by :func:`with_ids` (structlog's
context variables, which stdlib lines such as ``activity.logger`` merge too), workflow code by
the ``extra`` of :func:`journey_entered` and :func:`journey_exited` (through ``workflow.logger``,
silent during replay), and the SDK's own lines by the workflow and run ids it attaches.

What a line may hold: ids, node and channel names, statuses, counts. Never a message's
content, a profile value or a setting's secret at info level or above (``debug`` may show a
reason that quotes content). The metrics go through the SDK's meter, so they are served with
its own on the one Prometheus endpoint (``JOURNEYS_METRICS_ADDRESS``); the workflow's meter
records nothing during replay, so a replayed history counts no second entry.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import timedelta
from typing import Any, TextIO, TypeVar, cast

import structlog
import temporalio.activity
import temporalio.workflow
from temporalio import activity, workflow
from temporalio.common import MetricMeter
from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

F = TypeVar("F", bound=Callable[..., Any])

#: The ids every line of a journey carries (None where the code at hand has no such id).
IDS = ("journey_id", "user_id", "node_id", "workflow_id", "run_id")
#: Libraries whose INFO lines quote what must not be logged (httpx: each request's URL, which
#: is a webhook's rendered url or a web push subscription's endpoint).
QUIET_LOGGERS = ("httpx", "httpcore")

# --- metrics: names, labels (besides the SDK's namespace, task_queue, activity/workflow type) ---
ENTERED = "journeys_entered"  # journey_id: users who entered a journey
EXITED = "journeys_exited"  # journey_id, kind: users whose journey ended, by how it ended
MESSAGES = "journeys_messages"  # channel, status: messages settled by a send activity
SEND_LATENCY = "journeys_send_latency"  # channel, provider: one vendor call (ms)
#: An ended journey's ``kind`` from its exit reason's start (journey.py and waits.py word them).
EXIT_KINDS = (("exit event", "exit_event"), ("exited by an operator", "operator"),
              ("journey timeout", "timeout"))


def configure_logging(stream: TextIO | None = None, level: int = logging.INFO,
                      format: str = "auto") -> None:
    """Lines on ``stream`` (default stderr) at ``level`` and above: JSON, or readable ones
    (structlog's console renderer) when ``format`` is ``console``, or ``auto`` and the stream is
    a terminal (``JOURNEYS_LOG_FORMAT``)."""
    out = stream or sys.stderr
    readable = format == "console" or (format == "auto" and _is_terminal(out))
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    render: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=_is_terminal(out)) if readable
        else structlog.processors.JSONRenderer(default=str))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared,
                    *([] if readable else [structlog.processors.format_exc_info]), render],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write() per line, as the stdlib handler does: print() writes the line and its end
        # apart, and a line of another thread could land between them.
        logger_factory=structlog.WriteLoggerFactory(out))
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, *shared,
                           structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(),
                           _temporal_ids, _no_colors],
        # The record's exc_info reaches the event dict as a tuple: format it, or JSON gets a repr.
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([] if readable else [structlog.processors.format_exc_info]), render]))
    logging.basicConfig(handlers=[handler], level=level, force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # The SDK's loggers append their context to the message as a dict's repr; as fields (see
    # _temporal_ids) the message stays the event.
    temporalio.workflow.logger.workflow_info_on_message = False
    temporalio.activity.logger.activity_info_on_message = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or bare stream
        return False


def core_logging(level: str = "WARN") -> LoggingConfig:
    """The Temporal core's own lines (Rust; by default coloured text straight on stderr) through
    the ``temporalio.core`` logger: JSON as every other line. For the process's Runtime."""
    return LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="ERROR"),
                         forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))


def _temporal_ids(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The SDK's context (``temporal_workflow``, ``temporal_activity`` extras) as our id fields."""
    for key in ("temporal_workflow", "temporal_activity"):
        context = event.pop(key, None)
        if not isinstance(context, Mapping):
            continue
        event.setdefault("workflow_id", context.get("workflow_id"))
        event.setdefault("run_id", context.get("run_id") or context.get("workflow_run_id"))
        for field in ("activity_type", "attempt"):
            if field in context:
                event.setdefault(field, context[field])
    if "workflow_id" in event:
        event.setdefault("journey_id", journey_of(event["workflow_id"]))
    return event


def _no_colors(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn's ``color_message`` extra (the message again, with terminal colour codes) and the
    core's ``temporal_log`` (its entry, already in the message) are left out."""
    event.pop("color_message", None)
    event.pop("temporal_log", None)
    return event


def journey_of(workflow_id: object) -> str | None:
    """The journey of a workflow id ``journey/{journey}/...`` (journey ids hold no "/")."""
    if isinstance(workflow_id, str) and workflow_id.startswith("journey/"):
        return workflow_id.split("/", 2)[1]
    return None


# --- activities -------------------------------------------------------------------------------

def activity_ids(input: object) -> dict[str, str | None]:
    """The five ids of the running activity: workflow and run from its info, the rest from its
    input (or the send it carries, ``input.message``), the journey from the workflow id else."""

    def field(name: str) -> str | None:
        for source in (input, getattr(input, "message", None)):
            value = getattr(source, name, None)
            if isinstance(value, str):
                return value
        return None

    info = activity.info() if activity.in_activity() else None
    node = getattr(input, "node", None)  # choose_path carries its IntelliNODE
    workflow_id = info.workflow_id if info else field("workflow_id")
    return {"journey_id": field("journey_id") or journey_of(workflow_id), "user_id": field("user_id"),
            "node_id": field("node_id") or getattr(node, "id", None), "workflow_id": workflow_id,
            "run_id": info.workflow_run_id if info else None}


def with_ids(fn: F) -> F:
    """An activity whose every log line (ours, the SDK's, a library's) carries its journey's ids.

    Put it under ``@activity.defn``: the wrapper keeps the signature and hints the SDK reads.
    """
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def bound_async(*args: Any, **kwargs: Any) -> Any:
            with structlog.contextvars.bound_contextvars(**activity_ids(args[-1] if args else None)):
                return await fn(*args, **kwargs)
        return cast(F, bound_async)

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        with structlog.contextvars.bound_contextvars(**activity_ids(args[-1] if args else None)):
            return fn(*args, **kwargs)
    return cast(F, bound)


def _activity_meter() -> MetricMeter:
    """The running activity's meter (the SDK's runtime: its Prometheus endpoint); a no-op outside
    one (a test calling an activity method directly)."""
    try:
        return activity.metric_meter() if activity.in_activity() else MetricMeter.noop
    except RuntimeError:
        return MetricMeter.noop


def count_message(channel: str, status: str) -> None:
    """A message settled by this activity: counted once, where its final status is recorded."""
    _activity_meter().create_counter(MESSAGES, "messages settled, by channel and status").add(
        1, {"channel": channel, "status": status})


def observe_send(channel: str, provider: str, took: timedelta) -> None:
    """How long one vendor call took, whatever it answered."""
    _activity_meter().create_histogram_timedelta(
        SEND_LATENCY, "one delivery attempt's call to the channel's provider", "duration").record(
        took, {"channel": channel, "provider": provider})


# --- workflow code (no commands: these change no history) -------------------------------------

def journey_entered(journey_id: str, user_id: str, node_id: str | None) -> None:
    """A user entered: counted and logged once per entry (not again after continue-as-new)."""
    workflow.metric_meter().create_counter(ENTERED, "users who entered a journey").add(
        1, {"journey_id": journey_id})
    workflow.logger.info("journey entered", extra={
        "journey_id": journey_id, "user_id": user_id, "node_id": node_id})


def journey_exited(journey_id: str, user_id: str, node_id: str | None, reason: str | None) -> None:
    """A user's journey ended: ``kind`` is completed (walked to the end), exit_event, operator,
    timeout, or rule (the journey's own condition: an event done or not done in time, no date)."""
    kind = exit_kind(reason)
    workflow.metric_meter().create_counter(EXITED, "users whose journey ended, by how").add(
        1, {"journey_id": journey_id, "kind": kind})
    workflow.logger.info("journey exited", extra={
        "journey_id": journey_id, "user_id": user_id, "node_id": node_id, "kind": kind})


def exit_kind(reason: str | None) -> str:
    if not reason:
        return "completed"
    return next((kind for start, kind in EXIT_KINDS if reason.startswith(start)), "rule")
