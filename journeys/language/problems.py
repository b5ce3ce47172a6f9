"""Problems the validator reports, and the stable rule codes they carry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Every rule code, with what it means. The docs' rule table (docs/reference/rules.md) is made from this
#: by scripts/docs.py.
RULES: dict[str, str] = {
    # reading the file
    "unreadable": (
        "the file cannot be read (I/O error, not UTF-8) or parsed as YAML/JSON, or nests deeper than 16 "
        "levels"
    ),
    "too-large": (
        "the file is over 1 MiB (refused before it is read), or so is the journey as JSON: each user's "
        "workflow carries it in its input, and Temporal refuses payloads over 2 MB"
    ),
    "yaml-alias": (
        "a YAML anchor repeated by an alias (or a `<<` merge key): nested aliases expand a 600-byte file "
        "into gigabytes, so they are refused, with the line"
    ),
    "duplicate-key": (
        "a key is given twice in one mapping (YAML, with both lines; or JSON): only the last would count"
    ),
    "unknown-journey": "a `trigger_journey` node names a journey that is not in its folder (or not valid)",
    "trigger-event": (
        "a `trigger_journey` node's target does not enter on the event that personalizes the node (or "
        "no event reaches the node): the user could not enter it"
    ),
    "trigger-cycle": "`trigger_journey` nodes lead from a journey back to itself",
    "duplicate-journey": (
        "a journey has the id of an earlier file of its folder (files in name order); events could not tell "
        "them apart"
    ),
    # the file and its fields
    "missing-field": "a required field is absent",
    "unknown-field": "a field the format does not have (often a typo)",
    "unknown-node-type": "a node's type is not one of the node types",
    "bad-value": "a field's value has the wrong type or form (durations, times, ids ...)",
    # the graph
    "duplicate-id": "two nodes share an id",
    "unknown-entry": "`entry` names no node",
    "entry-not-segment": "the entry node is not an action, inaction, date_time or segment node",
    "segment-mid-journey": "a `segment` node is not the journey's entry: a segment says who enters",
    "segment-event": (
        "a segment's `did` or `did_not` event has no schema in the journey's `events` or the folder's "
        "catalog, where there are schemas: a misspelt name would match nobody, silently"
    ),
    "segment-window": (
        "a segment's `in_last` is not whole days (what users did is counted per day), or a profile "
        "condition cannot hold (`at_least` above `at_most` for one property)"
    ),
    "unknown-target": "a `next` (or branch) names no node",
    "cycle": "the nodes form a loop",
    "unreachable": "no path from the entry leads to the node",
    "date-source": "a date_time node needs exactly one of `event` + `date_property`, or `profile_property`",
    "percent-sum": "manual IntelliNODE percentages do not sum to 100",
    "intellinode-paths": "an IntelliNODE has fewer than 2 or more than 7 paths",
    "intellinode-goals": "an automated IntelliNODE needs the journey's `goals`",
    "too-many-goals": "a journey has more than 3 goals",
    "goal-within-without-goals": "`goal_within` is set but the journey has no `goals`",
    "unknown-outcome": (
        "an `on` path names no outcome of a send (delivered, failed, unreachable, capped, "
        "dropped_quiet_hours, skipped, unsubscribed)"
    ),
    "unknown-entry-key": (
        "`entry_key` is not a property of the entry event's schema; an entry event with no schema (in the "
        "journey's `events` or the folder's catalog) is refused too, and so is a profile-date entry, which "
        "has no event to key on"
    ),
    # quiet hours
    "quiet-hours": (
        "a quiet-hours window is empty (`end` equals `start`), or a node both sets `quiet_hours` and "
        "`ignore_quiet_hours`"
    ),
    "unknown-timezone": "the journey's `timezone` is not an IANA timezone",
    # messages and templates
    "missing-message-field": "a channel's required message field is absent",
    "unknown-message-field": "a message field the channel does not have",
    "template-syntax": "a template does not parse (the line is given)",
    "expression-syntax": "a split `when` expression does not compile",
    "unknown-variable": "a template reads a variable other than `profile` and `event` (often a typo)",
    "unsafe-attribute": "a template reads an attribute the sandbox refuses (`_private`, `__class__`)",
    # the product page's personalization rules
    "event-unavailable": "a template reads `event` where no event is available",
    "event-in-online-channel": "in_app, web_popup and app_inbox cannot use event personalization",
    "event-delay-too-long": "a delay of 24h or more lies between the event's node and its use",
    "unknown-event-property": "a template reads an event property the event's schema lacks",
    "locale-missing-field": "a message's version for a locale lacks a field its default version has",
    "unknown-catalog": ("`catalog()` does not name a catalog in quotes, or names one the journey "
                        "and its folder do not declare (`catalogs:`)"),
    "unknown-catalog-field": "a template reads a field of a catalog's items that its declaration lacks",
    # a bug of ours
    "validator-error": (
        "a rule of the validator failed on the journey (a bug of ours: the file is set aside, the others "
        "route; please report it)"
    ),
}


class Problem(BaseModel):
    """One thing wrong with a journey file, precise enough to fix without reading code."""

    model_config = ConfigDict(frozen=True)

    file: str
    node: str | None
    field: str | None
    code: str
    message: str

    def __str__(self) -> str:
        where = f"node '{self.node}'" if self.node else "journey"
        field = f" ({self.field})" if self.field else ""
        return f"{self.file}: {where}{field}: {self.message} [{self.code}]"


class UsageError(Exception):
    """The command cannot read its input at all (missing file, unreadable YAML): exit 2."""
