"""Shared test set-up: the time-skipping server per module, the ``slow`` marker and the order
modules start in (slowest first, for pytest-xdist), and leaving pytest without the Temporal
client's teardown abort."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from connection.converter import data_converter
from journeys.store.database import Store
from service.runtime import binary, leave
from tests.helpers.support import free_port, running_worker

_status: dict[str, int] = {}


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server for the module (one per module: time skipping is global to
    an environment). Modules that need the dev server define their own ``env``."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, port=free_port(),
        test_server_existing_path=binary("temporal-test-server"))
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's data dir, as JOURNEYS_DATA_DIR: its store's journeys.db, for the CLI too."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Store:
    return Store(f"sqlite:///{data_dir / 'journeys.db'}")


@pytest.fixture(scope="module")
async def worker(request: pytest.FixtureRequest, env: WorkflowEnvironment,
                 store: Store) -> AsyncIterator[None]:
    """A journey worker on the module's ``QUEUE``, for the module."""
    async with running_worker(env.client, store, request.module.QUEUE):
        yield


#: The slow end-to-end tests (several seconds each: real worker and CLI processes, kills, dev
#: servers), marked ``slow`` here so that ``pytest -m "not slow"`` runs the fast part: by module,
#: each test's name (``*``: every test of the module) and about how many seconds it (each of its
#: cases) takes on two cores, by which modules are ordered. A name its module lacks is an error
#: (not a test left unmarked after a rename).
SLOW: dict[str, dict[str, float]] = {
    "test_killed_routers.py": {"test_ingest_killed_mid_file_then_the_file_again": 50,
                               "test_serve_killed_mid_batch_then_the_batch_again": 30},
    "test_operate_display.py": {"test_exit_reports_a_server_error_and_fails": 28,
                                "test_list_status_and_exit_print_hidden_characters_as_escapes": 20,
                                "test_list_finds_users_with_quotes_and_backslashes": 13,
                                "test_list_shows_a_keyed_instance_s_user_and_key_apart": 4},
    "test_identity.py": {"test_journeys_under_the_old_ids_still_get_their_events": 8,
                         "test_an_event_id_counts_once_per_user_and_journey_across_runs": 6,
                         "test_journey_ids_that_share_a_prefix_do_not_collide": 6,
                         "test_status_without_a_worker_and_of_a_terminated_journey": 6,
                         "test_errors_a_user_can_act_on": 5},
    "test_http_outages.py": {"test_event_and_ingest_with_the_store_locked": 12,
                             "test_serve_started_while_temporal_is_down_answers_503_and_not_ready": 4,
                             "test_event_and_ingest_name_what_temporal_did_not_take": 5,
                             "test_a_store_locked_by_another_process_is_503_then_routes": 4,
                             "test_temporal_down_is_503_with_retry_after_within_the_deadline": 4,
                             "test_a_temporal_that_stops_answering_mid_way_is_503_then_routes": 3},
    "test_drill.py": {"*": 21},
    "test_scripts.py": {"test_bench_prints_the_ratio": 20},
    "test_operate.py": {"test_exit_during_an_outage_cancels_the_retrying_send": 6,
                        "test_exit_all_quotes_the_journey_it_is_given": 5,
                        "test_list_shows_node_event_and_wake_up": 3,
                        "test_exit_all_takes_everyone_out": 3,
                        "test_replay_checks_the_server_histories_on_this_code": 3},
    "test_devserver_lock.py": {"*": 5},
    "test_intellinode.py": {"test_thompson_sampling_moves_users_to_the_better_path": 8,
                            "test_automated_mode_learns_from_conversions": 5,
                            "test_manual_percentages_winner_and_reset_change_live": 5},
    "test_make_run.py": {"*": 8},
    "test_retired.py": {"test_status_and_exit_find_the_user_by_their_runs_not_the_file": 6},
    "test_killed_mid_send.py": {"*": 10},
    "test_logs.py": {"test_a_run_logs_ids_and_no_secret_content_or_profile_value": 10},
    "test_metrics.py": {"test_worker_serves_project_and_sdk_metrics_on_one_endpoint": 8},
    "test_http_slow.py": {"test_health_answers_while_slow_connections_would_exhaust_the_file_limit": 5,
                          "test_an_accept_that_fails_is_logged_once_per_interval_as_json": 3},
    "test_http_loop.py": {"test_health_answers_while_a_changed_catalog_is_validated": 7},
    "test_mtls.py": {"*": 6},
    "test_worker.py": {"test_dev_worker_runs_a_journey_survives_a_restart_and_exits_cleanly": 5},
    "test_two_workers.py": {"*": 4},
    "test_devserver.py": {"test_cli_event_status_outbox": 4},
    "test_keyed.py": {"test_two_carts_side_by_side_and_a_checkout_ends_only_its_cart": 3},
    "test_report.py": {"test_the_screenshot_is_not_blank": 3},
    "test_smtp.py": {"test_dev_worker_sends_a_journeys_email_into_the_mail_folder": 3},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the ``SLOW`` tests, and put the modules with the most slow seconds first (the
    others after them, in the order collected): pytest-xdist (``--dist loadfile``) hands out
    whole modules in this order, and a long module handed out last would keep one worker busy
    long after the others are done."""
    checked: set[str] = set()
    weight: dict[Path, float] = {}
    for item in items:
        module, name = item.path.name, getattr(item, "originalname", item.name)
        slow = SLOW.get(module, {})
        if slow and module not in checked and isinstance(item, pytest.Function):
            checked.add(module)
            gone = sorted(name for name in slow.keys() - {"*"} if not hasattr(item.module, name))
            if gone:
                raise pytest.UsageError(f"tests/conftest.py: SLOW names tests {module} lacks: {gone}")
        seconds = slow.get(name, slow.get("*"))
        if seconds is not None:
            item.add_marker(pytest.mark.slow)
        weight[item.path] = weight.get(item.path, 0.0) + (seconds or 0.0)
    first = {path: index for index, path in enumerate(weight)}  # the modules' collected order
    items.sort(key=lambda item: (-weight[item.path], first[item.path]))  # stable within a module


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal client's Rust threads can outlive the interpreter and abort it at exit
    # (sdk-python #300, exit status 134) after every test has passed; the summary is printed
    # by now, so leave with pytest's own status.
    if "code" in _status and not os.environ.get("JOURNEYS_NORMAL_EXIT"):
        leave(_status["code"])
