"""The journey format: what a journey file says, as pydantic v2 models.

A journey is a graph of nodes. Segment nodes (action, inaction, date_time) decide who enters
and which event later messages are personalized with; delays wait; engagement nodes send;
controller nodes (profile_update, intellinode, split) change the profile or choose a path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from journeys.language.channels import (
    OUTCOMES,
    Channel,
    QuietHours,
    Track,
    check_time_of_day,
)
from journeys.language.durations import Duration, Offset
from journeys.language.messages import Locale, Message, Variant, read_locales, versions
from journeys.language.segments import Did, DidNot, ProfileCondition, Schedule

NodeId = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
EventName = Annotated[str, Field(min_length=1, max_length=200)]
#: A subscription topic (newsletter, promotions): users unsubscribe from one topic of a channel.
TOPIC_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Topic = Annotated[str, Field(min_length=1, max_length=100, pattern=TOPIC_PATTERN)]
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Node(_Model):
    id: NodeId
    name: str | None = Field(default=None,
                             description="A label for people; the id is used if absent.")

    def targets(self) -> Iterator[tuple[str, str]]:
        """(field, node id) for every node this one can lead to."""
        return iter(())

    @property
    def label(self) -> str:
        return self.name or self.id


class _Next(_Node):
    next: NodeId | None = Field(default=None, description="The node that follows.")

    def targets(self) -> Iterator[tuple[str, str]]:
        if self.next:
            yield "next", self.next


class ActionNode(_Next):
    """The user did ``event``. Entry: they enter. Mid-journey: wait up to ``within`` for it."""

    type: Literal["action"]
    event: EventName
    where: dict[str, Scalar] = Field(default_factory=dict, description="Property equality filters.")
    within: Duration | None = None
    timeout_next: NodeId | None = Field(default=None, description="Where to go if the wait ends.")

    def targets(self) -> Iterator[tuple[str, str]]:
        yield from super().targets()
        if self.timeout_next:
            yield "timeout_next", self.timeout_next


class InactionNode(_Next):
    """The user did ``event`` but not ``not_event`` within ``within``."""

    type: Literal["inaction"]
    event: EventName | None = Field(default=None, description="The main event (required at entry).")
    where: dict[str, Scalar] = Field(default_factory=dict)
    not_event: EventName
    within: Duration


class DateTimeNode(_Next):
    """Go on at a date: an event's date property, or a profile date, plus ``offset``."""

    type: Literal["date_time"]
    event: EventName | None = None
    date_property: str | None = Field(default=None, description="A date property of the event.")
    profile_property: str | None = Field(default=None,
                                         description="A date property of the profile.")
    offset: Offset = timedelta(0)
    at: str | None = Field(default=None,
                           description="Local time of day, HH:MM, in the user's timezone.")
    within: Duration | None = Field(default=None,
                                    description="Mid-journey: how long to wait for the event.")

    @field_validator("at")
    @classmethod
    def _check_at(cls, value: str | None) -> str | None:
        return None if value is None else check_time_of_day(value)


class DelayNode(_Next):
    type: Literal["delay"]
    duration: Duration



class OnEngagement(_Model):
    """After a delivered message: wait for what the user does with it; the first that happens wins."""

    clicked: NodeId | None = Field(default=None, description="The node after a click in the message.")
    opened: NodeId | None = Field(default=None, description="The node after it is opened.")
    within: Duration = Field(description="How long to wait for it (a durable timer).")
    otherwise: NodeId | None = Field(
        default=None, description="The node when neither happens in time (default: next).")


class EngagementNode(_Next):
    """Send a message on a channel; every message field is a Jinja2 template. The message may hold
    versions by locale (``message: {default: ..., fr: ...}``), or the node content variants."""

    type: Literal["engagement"]
    channel: Channel
    message: Message = Field(default_factory=dict, description=(
        "The message's fields; or its versions by locale: {default: {...}, fr: {...}, pt-BR: {...}} "
        "(the user's profile locale or language chooses: pt-BR, then pt, then default)."))
    locales: dict[Locale, Message] = Field(
        default_factory=dict, description="The versions by locale (written as message.fr ...).")
    variants: list[Variant] = Field(
        default_factory=list, description="Content variants instead of one message: one chosen per "
                                          "user by weight, the same each time (starter.py variants).")
    quiet_hours: QuietHours | None = Field(
        default=None, description="This message's quiet hours, instead of the journey's.")
    ignore_quiet_hours: bool = Field(
        default=False, description="Send whatever the time (a transactional message).")
    topic: Topic | None = Field(
        default=None, description="This message's subscription topic, instead of the journey's: "
                                  "a user unsubscribed from it on this channel is not sent it.")
    track: Track | None = Field(default=None, description="This email's tracking, instead of the journey's.")
    on_engagement: OnEngagement | None = Field(
        default=None, description="Branch on what the user does with the delivered message: "
                                  "clicked, opened, or otherwise after within.")
    on: Annotated[dict[str, NodeId], WithJsonSchema({
        "type": "object", "propertyNames": {"enum": list(OUTCOMES)},
        "additionalProperties": {"type": "string"}})] = Field(
        default_factory=dict, description="The node to go to after each outcome; an outcome "
                                          "without one goes to next.")

    @model_validator(mode="before")
    @classmethod
    def _on_key(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return read_locales(data)

    def versions(self) -> Iterator[tuple[str, Message]]:
        """Every version it may send, by the field path of its problems (journeys.language.messages)."""
        return versions(self.message, self.locales, self.variants)

    def targets(self) -> Iterator[tuple[str, str]]:
        yield from super().targets()
        for outcome, target in self.on.items():
            yield f"on.{outcome}", target
        if self.on_engagement:
            for kind in ("clicked", "opened", "otherwise"):
                if (target := getattr(self.on_engagement, kind)) is not None:
                    yield f"on_engagement.{kind}", target


class ProfileUpdateNode(_Next):
    type: Literal["profile_update"]
    set: dict[str, str] = Field(min_length=1, description="Profile property to template.")


class IntelliPath(_Model):
    next: NodeId
    name: str | None = None
    percent: int | None = Field(default=None, ge=0, le=100)


class IntelliNode(_Node):
    type: Literal["intellinode"]
    mode: Literal["automated", "manual"] = "manual"
    paths: list[IntelliPath]
    min_share: int = Field(default=10, ge=0, le=50, description=(
        "Automated mode: the smallest share of users, in percent, each path keeps, so it "
        "keeps learning."))

    def path_name(self, index: int) -> str:
        """A path's name as stats and the command line know it: its name, else its target."""
        path = self.paths[index]
        return path.name or path.next

    def targets(self) -> Iterator[tuple[str, str]]:
        for i, path in enumerate(self.paths):
            yield f"paths[{i}].next", path.next


class Branch(_Model):
    when: str = Field(min_length=1, description="A Jinja2 expression over profile and event.")
    next: NodeId


class SplitNode(_Node):
    type: Literal["split"]
    branches: list[Branch] = Field(min_length=1)
    otherwise: NodeId

    def targets(self) -> Iterator[tuple[str, str]]:
        for i, branch in enumerate(self.branches):
            yield f"branches[{i}].next", branch.next
        yield "otherwise", self.otherwise


class TriggerJourneyNode(_Next):
    """Enter the user into another journey, with the current personalization event as its
    entry event (CleverTap's Journey Trigger); once per entry."""

    type: Literal["trigger_journey"]
    journey: NodeId = Field(description="The journey to enter the user into (its id, in the same catalog).")


class SegmentNode(_Next):
    """An audience journey's entry: the users in the segment (every condition holds) enter on
    its schedule (CleverTap's Past Behaviour, Braze's scheduled canvas)."""

    type: Literal["segment"]
    profile: list[ProfileCondition] = Field(default_factory=list, max_length=20)
    did: list[Did] = Field(default_factory=list, max_length=10)
    did_not: list[DidNot] = Field(default_factory=list, max_length=10)
    schedule: Schedule


class ExitNode(_Node):
    type: Literal["exit"]


Node = Annotated[
    ActionNode
    | InactionNode
    | DateTimeNode
    | DelayNode
    | EngagementNode
    | ProfileUpdateNode
    | IntelliNode
    | SplitNode
    | TriggerJourneyNode
    | SegmentNode
    | ExitNode,
    Field(discriminator="type"),
]
SEGMENT_TYPES = frozenset({"action", "inaction", "date_time", "segment"})


class EventSchema(_Model):
    """The properties an event carries; templates may only read these."""

    properties: Annotated[dict[str, str], WithJsonSchema({"anyOf": [
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "array", "items": {"type": "string"}}]})] = Field(
        default_factory=dict, description="Property names, or a mapping of name to type.")

    @field_validator("properties", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(name): "any" for name in value}
        return value


class CatalogSchema(_Model):
    """The fields of a catalog's items (``catalog('products', id).price``); templates may only
    read these. A type (number, integer, boolean) also types a CSV import's column."""

    fields: Annotated[dict[str, str], WithJsonSchema({"anyOf": [
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "array", "items": {"type": "string"}}]})] = Field(
        default_factory=dict, description="Field names, or a mapping of name to type.")

    @field_validator("fields", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        return {str(name): "any" for name in value} if isinstance(value, list) else value


class Journey(_Model):
    """A journey definition, pinned in each user's workflow when they enter."""

    id: NodeId
    name: str = Field(min_length=1)
    entry: NodeId
    nodes: list[Node] = Field(min_length=1)
    reentry: Literal["never", "after_exit"] = "never"
    exit_when: list[EventName] = Field(default_factory=list)
    goals: list[EventName] = Field(default_factory=list)
    goal_within: Duration | None = Field(
        default=None, description="A goal counts as a conversion only this long after entry "
                                  "(default: as long as the user is in the journey).")
    timeout: Duration | None = None
    events: dict[str, EventSchema] = Field(default_factory=dict)
    catalogs: dict[str, CatalogSchema] = Field(
        default_factory=dict, description="The catalogs templates read, with their items' fields "
                                          "(beside the folder's catalog file's).")
    timezone: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="An IANA timezone (Europe/Paris): quiet hours' clock for users whose "
                    "profile has no valid 'timezone'; default UTC.")
    quiet_hours: QuietHours | None = Field(
        default=None, description="Quiet hours of every message of the journey.")
    ignore_caps: bool = Field(
        default=False, description="Transactional messages: the frequency caps "
                                   "(JOURNEYS_CAPS) neither hold nor count them.")
    category: Literal["marketing", "transactional"] = Field(
        default="marketing", description="marketing: not sent to a user unsubscribed from the "
        "message's channel or topic (status unsubscribed); transactional (password resets, "
        "receipts): sent whatever the subscriptions, and neither held nor counted by the caps.")
    topic: Topic | None = Field(
        default=None, description="The subscription topic of the journey's messages "
                                  "(newsletter, promotions); a node may name its own.")
    track: Track = Field(default_factory=Track, description="What is tracked of its emails: "
                         "opens and clicks (both by default); a node may say its own.")
    priority: int | None = Field(
        default=None, ge=1, le=5,
        description="Its runs' task-queue priority, 1 (first) to 5; default: 1 for transactional "
                    "journeys, 2 for those events start, 4 for audience journeys.")
    control_percent: int = Field(
        default=0, ge=0, le=100,
        description="This share of entrants (the same users always, by user id and journey) "
                    "walks the journey without being messaged: a control group.")
    entry_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="An entry event property (cart_id): one journey instance per user and "
                    "value of it, side by side; events with the property reach only their "
                    "instance, events without it every instance of the user.")

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def track_of(self, node: EngagementNode) -> Track:
        """The node's own tracking, else the journey's."""
        return node.track or self.track

    def topic_of(self, node: EngagementNode) -> str | None:
        """The node's subscription topic, else the journey's."""
        return node.topic or self.topic

    @property
    def transactional(self) -> bool:
        return self.category == "transactional"

    def quiet_hours_of(self, node: EngagementNode) -> QuietHours | None:
        """The node's own quiet hours, else the journey's (none if the node ignores them)."""
        return None if node.ignore_quiet_hours else node.quiet_hours or self.quiet_hours

    @property
    def entry_node(self) -> Node:
        return self.node(self.entry)

    @property
    def trigger_events(self) -> frozenset[str]:
        """Events that may start this journey for a user."""
        entry = self.entry_node
        event = getattr(entry, "event", None)
        return frozenset({event}) if event else frozenset()
