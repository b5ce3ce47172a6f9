"""Whose journey is whose, once: ids that cannot collide, event ids processed once per user and
journey, a failure in one journey that does not stop the others, and a status that tells the
truth with or without a worker. Driven through ``starter.py`` as users run it, on the dev server.

This module's server refuses ids over 40 characters (``limit.maxIDLength``), so routing to one
journey can fail for real while the others go on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from journeys.events import Event
from journeys.language.models import Journey
from journeys.store.database import Store
from tests.helpers.support import Harness, dev_server, run_cli, running_worker
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID, JourneyInput

QUEUE = "journeys-identity"


def _journey(journey_id: str, event: str, *, wait: str | None = None, reentry: str = "never",
             text: str = "Hi {{ event.name }}", **extra: Any) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "entered", "type": "action", "event": event, "next": "hello"},
        {"id": "hello", "type": "engagement", "channel": "sms", "message": {"text": text}}]
    if wait:
        nodes[1]["next"] = "wait"
        nodes.append({"id": "wait", "type": "delay", "duration": wait})
    return {"id": journey_id, "name": journey_id, "entry": "entered", "reentry": reentry,
            "nodes": nodes, **extra}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    journeys = [
        _journey("welcome", "Signed Up", wait="1h", exit_when=["Left"]),
        _journey("welcome-back", "Signed Up", wait="1h", exit_when=["Left"]),
        _journey("once", "Once", reentry="after_exit"),
        # Its workflow ids are too long for this server: its start fails.
        _journey("thank-you-for-buying-with-a-long-id", "Bought"),
        _journey("thanks", "Bought", text="Thanks for {{ event.item }}"),
        _journey("shout", "Shouted", text="{{ event.s * 2 }}"),
    ]
    for journey in journeys:
        (folder / f"{journey['id']}.yaml").write_text(yaml.safe_dump(journey))
    return folder


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server("limit.maxIDLength=40") as environment:
        yield environment


#: The workers here keep no workflow cache, so poll no sticky queue: its name, ``<pid>@<host>-``
#: and 32 hex digits, is over this server's 40 characters once the pid has 5 digits, and the
#: worker's workflow poller then stops (its journeys wait for ever).
NO_STICKY_QUEUE: dict[str, Any] = {"max_cached_workflows": 0}


@pytest.fixture(scope="module")
async def worker(env: WorkflowEnvironment, store: Store) -> AsyncIterator[None]:
    async with running_worker(env.client, store, QUEUE, **NO_STICKY_QUEUE):
        yield


async def cli(env: WorkflowEnvironment, data_dir: Path, catalog: Path, *args: str,
              stdin: str = "", **environ: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(run_cli, env, data_dir, QUEUE, *args, "--journeys", str(catalog),
                                   stdin=stdin, **environ)
    return done.returncode, done.stdout, done.stderr


def _actions(stdout: str) -> dict[str, str]:
    return {r["journey_id"]: r["action"] for r in json.loads(stdout)}


async def test_journey_ids_that_share_a_prefix_do_not_collide(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, worker: None) -> None:
    code, out, err = await cli(env, data_dir, catalog, "event", "ada", "Signed Up", "--json",
                               "--props", '{"name": "Ada"}')
    assert code == 0, err
    assert _actions(out) == {"welcome": "started", "welcome-back": "started"}
    # back-ada in welcome had the id of ada in welcome-back (journey-welcome-back-ada).
    code, out, err = await cli(env, data_dir, catalog, "event", "back-ada", "Signed Up", "--json",
                               "--props", "-", stdin='{"name": "Back"}')
    assert code == 0, err
    assert _actions(out) == {"welcome": "started", "welcome-back": "started"}
    code, out, err = await cli(env, data_dir, catalog, "status", "back-ada", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["workflow_id"] for r in rows} == {"journey/welcome/back-ada", "journey/welcome-back/back-ada"}
    assert {r["event_properties"]["name"] for r in rows} == {"Back"}
    code, out, err = await cli(env, data_dir, catalog, "event", "ada", "Left", "--json")
    assert _actions(out) == {"welcome": "signalled", "welcome-back": "signalled"}


async def test_an_event_id_counts_once_per_user_and_journey_across_runs(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    code, out, err = await cli(env, data_dir, catalog, "event", "d1", "Once", "--id", "evt-1")
    assert code == 0, err
    assert out.split()[0] == "started"
    handle = env.client.get_workflow_handle("journey/once/d1")
    await handle.result()  # the journey ended: reentry after_exit would let d1 in again ...
    code, out, err = await cli(env, data_dir, catalog, "event", "d1", "Once", "--id", "evt-1")
    assert code == 0, err
    assert out.split()[0] == "duplicate"  # ... but not with the same event
    code, out, _ = await cli(env, data_dir, catalog, "event", "d1", "Once", "--id", "evt-2")
    assert out.split()[0] == "started"  # another event does re-enter
    code, out, _ = await cli(env, data_dir, catalog, "event", "d2", "Once", "--id", "evt-1")
    assert out.split()[0] == "started"  # the same id from another user is another event
    await handle.result()
    await env.client.get_workflow_handle("journey/once/d2").result()
    sent = [r for r in store.outbox_list(journey_id="once") if r.user_id in ("d1", "d2")]
    assert sorted(r.user_id for r in sent) == ["d1", "d1", "d2"]


async def test_a_failing_journey_does_not_stop_the_others(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    code, out, err = await cli(env, data_dir, catalog, "event", "eve", "Bought", "--json",
                               "--props", '{"item": "socks"}', "--id", "buy-1")
    assert code == 1, err  # one journey failed: the command says so in its status
    routed = {r["journey_id"]: r for r in json.loads(out)}
    assert routed["thanks"]["action"] == "started"
    long_id = routed["thank-you-for-buying-with-a-long-id"]
    assert long_id["action"] == "failed" and "exceeds maximum allowed length" in long_id["error"]
    await env.client.get_workflow_handle("journey/thanks/eve").result()
    # Sent again, the journey that had it is not entered twice; the failed one is tried again.
    code, out, _ = await cli(env, data_dir, catalog, "event", "eve", "Bought", "--json",
                             "--props", '{"item": "socks"}', "--id", "buy-1")
    assert _actions(out) == {"thanks": "duplicate", "thank-you-for-buying-with-a-long-id": "failed"}
    assert [r.node_id for r in store.outbox_list(user_id="eve")] == ["hello"]


async def test_a_message_too_large_for_its_channel_fails_and_the_journey_goes_on(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    code, _, err = await cli(env, data_dir, catalog, "event", "kay", "Shouted",
                             "--props", json.dumps({"s": "A" * 1000}))
    assert code == 0, err
    state = await env.client.get_workflow_handle_for(JourneyWorkflow.run, "journey/shout/kay").result()
    assert state.status == "finished"
    [row] = store.outbox_list(user_id="kay")
    assert row.status == "failed" and "over the sms limit of 1,600 bytes" in (row.reason or "")
    assert [(m.node_id, m.status) for m in state.messages] == [("hello", "failed")]
    listed = await asyncio.to_thread(run_cli, env, data_dir, QUEUE, "outbox", "--user", "kay")
    assert "failed    not sent: text refused — the message is over the sms limit" in listed.stdout
    assert state.messages[0].reason == "not sent: text refused"  # (history: the class only)
    await Harness(env, store, [], QUEUE).record_history("message-failed-too-large", "shout", "kay")


async def test_status_without_a_worker_and_of_a_terminated_journey(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store) -> None:
    queue = {"JOURNEYS_TASK_QUEUE": "journeys-stopped"}  # its own worker, stopped below
    async with running_worker(env.client, store, queue["JOURNEYS_TASK_QUEUE"], **NO_STICKY_QUEUE):
        code, _, err = await cli(env, data_dir, catalog, "event", "fox", "Signed Up",
                                 "--props", '{"name": "Fox"}', **queue)
        assert code == 0, err
        code, _, err = await cli(env, data_dir, catalog, "event", "fox", "Once",
                                 "--props", '{"name": "Fox", "plan": "pro"}', **queue)
        assert code == 0, err
        handle = env.client.get_workflow_handle("journey/welcome/fox")
        for _ in range(100):  # until the three sms went out and the user waits
            if [r.status for r in store.outbox_list(user_id="fox")] == ["kept"] * 3:
                break
            await asyncio.sleep(0.1)
        await env.client.get_workflow_handle("journey/once/fox").result()
    await handle.terminate(reason="support asked us to stop it")
    # The worker is gone now: status answers at once, from Temporal and the outbox.
    code, out, err = await cli(env, data_dir, catalog, "status", "fox", **queue)
    assert code == 0, err
    assert "journey/welcome/fox  terminated" in out
    assert "exit: terminated: support asked us to stop it" in out
    assert "journey/welcome-back/fox  running" in out and "note: no worker answered" in out
    assert out.count("message hello: sms kept") == 3, out
    # A finished journey, without a worker: its result names no event; its last message does,
    # and the event's receipt keeps its properties.
    once = 'journey/once/fox  completed (finished)  node=hello  event=Once {"name": "Fox", "plan": "pro"}'
    assert once in out


async def test_journeys_under_the_old_ids_still_get_their_events(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, worker: None) -> None:
    # A journey release 0.1 started, under its ambiguous id, with its search attributes.
    journey = Journey.model_validate(_journey("welcome-back", "Signed Up", wait="1h", exit_when=["Left"]))
    event = Event(id="old-1", name="Signed Up", user_id="gil", properties={"name": "Gil"},
                  time="2026-11-01T00:00:00Z")
    old = await env.client.start_workflow(
        JourneyWorkflow.run, JourneyInput(journey=journey, user_id="gil", entry_event=event),
        id="journey-welcome-back-gil", task_queue=QUEUE, start_signal="event", start_signal_args=[event],
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(JOURNEY_ID, "welcome-back"), SearchAttributePair(USER_ID, "gil"),
            SearchAttributePair(JOURNEY_NODE, "entered")]))
    code, out, err = await cli(env, data_dir, catalog, "status", "gil", "--json")
    assert [r["workflow_id"] for r in json.loads(out)] == ["journey-welcome-back-gil"]
    # welcome's back-gil has the same old id: it is not gil's, so it is not shown.
    code, out, err = await cli(env, data_dir, catalog, "status", "back-gil", "--json")
    assert json.loads(out) == []
    code, out, err = await cli(env, data_dir, catalog, "event", "gil", "Left", "--json")
    assert code == 0, err
    assert {r["workflow_id"]: r["action"] for r in json.loads(out)} == {
        "journey-welcome-back-gil": "signalled"}
    state = await old.result()
    assert state.exit_reason == "exit event 'Left'"
    code, out, _ = await cli(env, data_dir, catalog, "status", "gil", "--json",
                             JOURNEYS_LEGACY_IDS="false")
    assert json.loads(out) == []
    # reentry: never holds across the ids: gil did welcome-back under 0.1, not welcome.
    code, out, err = await cli(env, data_dir, catalog, "event", "gil", "Signed Up", "--json")
    assert code == 0, err
    assert _actions(out) == {"welcome-back": "not-reentered", "welcome": "started"}


async def test_a_broken_file_in_the_catalog_does_not_stop_routing(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, tmp_path: Path, worker: None) -> None:
    for path in catalog.iterdir():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(_journey("typo", "Signed Up", wait="1x")))
    code, out, err = await cli(env, data_dir, tmp_path, "event", "hal", "Signed Up", "--json")
    assert code == 0, err
    assert _actions(out) == {"welcome": "started", "welcome-back": "started"}
    assert "empty.yaml" in err and "typo.yaml" in err and "skipped" in err
    code, out, err = await cli(env, data_dir, tmp_path, "event", "hal", "Left", "--json")
    assert _actions(out) == {"welcome": "signalled", "welcome-back": "signalled"}
    assert "typo.yaml" in err


async def test_a_file_of_events_ingested_twice_enters_nobody_twice(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, tmp_path: Path,
        worker: None) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text("\n".join([
        json.dumps({"user_id": "i1", "name": "Once", "properties": {"name": "One"}}),  # no id
        json.dumps({"userId": "i2", "event": "Once", "properties": {"name": "Two"},  # Segment's
                    "messageId": "seg-1", "traits": {"plan": "pro"}}),
        "{not json",
        json.dumps({"user_id": "i3", "name": "Signed Up", "properties": {"name": "Three"}}),
        json.dumps({"user_id": "i3", "name": "Left"}),  # after its entry: each user's in order
        "",
        json.dumps({"user_id": "i4", "name": "Page Viewed"}),  # no journey uses it
    ]) + "\n")
    code, out, err = await cli(env, data_dir, catalog, "ingest", str(events))
    assert code == 1, err  # a line was refused
    assert "refused  line 3: not JSON" in err
    assert out.strip() == ("read 6, started 3, signalled 1, ignored 1, refused 1, failed 0")
    for user, journey in (("i1", "once"), ("i2", "once"), ("i3", "welcome")):
        await env.client.get_workflow_handle(f"journey/{journey}/{user}").result()
    assert store.profile("i2") == {"plan": "pro"}
    sent = sorted(r.user_id for r in store.outbox_list() if r.user_id in ("i1", "i2", "i3"))
    # The same file again: every line is a duplicate, although `once` lets users re-enter.
    code, out, err = await cli(env, data_dir, catalog, "ingest", "-", stdin=events.read_text())
    assert out.strip() == "read 6, started 0, signalled 0, ignored 5, refused 1, failed 0"
    assert sorted(r.user_id for r in store.outbox_list() if r.user_id in ("i1", "i2", "i3")) == sent


async def test_errors_a_user_can_act_on(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    code, _, err = await cli(env, data_dir, catalog, "status", "ada", TEMPORAL_NAMESPACE="nope")
    assert code == 2 and "has no namespace 'nope'" in err and "Traceback" not in err
    code, out, err = await cli(env, data_dir, catalog, "event", "ada", "signed up")
    assert code == 0 and "no journey starts" in out
    assert "did you mean 'Signed Up'?" in err
    deep = '{"a":' * 900 + "1" + "}" * 900
    code, _, err = await cli(env, data_dir, catalog, "event", "ada", "Signed Up", "--props", "-",
                             stdin=deep)
    assert code == 2 and "nest deeper than 16 levels" in err and "Traceback" not in err
