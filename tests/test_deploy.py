"""The container image and the Kubernetes example (issue 10, section 3). No container engine
runs here, so the image is checked through what it is made of: the wheel ``pip install .``
builds holds every module, the Dockerfile copies every package, and the manifests name only
settings that exist, commands that exist and requests that cover the measured memory."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml
from setuptools import find_packages

from journeys.settings import Settings
from tests.helpers.support import ROOT
from tests.test_house import ROOMS

DEPLOY = ROOT / "deploy" / "kubernetes"
PACKAGES = ROOMS  # every room of the house (tests/test_house.py)
#: The worker's RSS in the load drill, 20,000 parked journeys (docs/development/load-drill.md).
WORKER_RSS_MIB = 238


def manifests() -> list[dict]:
    return [doc for path in sorted(DEPLOY.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def containers() -> list[dict]:
    return [c for doc in manifests() if doc["kind"] == "Deployment"
            for c in doc["spec"]["template"]["spec"]["containers"]]


def test_the_install_holds_every_module() -> None:
    """What ``pip install .`` (the image) packs: the packages setuptools finds with the
    project's own configuration must hold every module of the code."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_packages(where=str(ROOT), include=config["packages"]["find"]["include"])
    held = {f"{package.replace('.', '/')}/{p.name}" for package in found
            for p in (ROOT / package.replace(".", "/")).glob("*.py")}
    wanted = {str(p.relative_to(ROOT)) for package in PACKAGES
              for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
    assert wanted - held == set()  # (a folder of modules without __init__.py is left out)
    assert config["py-modules"] == ["worker", "starter"]


def test_the_dockerfile_copies_every_package_and_runs_the_worker() -> None:
    text = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+?)/? ", text, re.M))
    assert set(PACKAGES) <= copied
    assert all((ROOT / source).exists() for source in copied), copied
    assert 'CMD ["python", "worker.py"]' in text and "STOPSIGNAL SIGTERM" in text


def test_the_manifests_name_real_settings_and_commands() -> None:
    known = {field.alias for field in Settings.model_fields.values() if field.alias}
    for container in containers():
        names = {env["name"] for env in container.get("env", [])}
        ours = {n for n in names if n.startswith("JOURNEYS_")}
        assert ours <= known, ours - known
        assert names - ours <= {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY",
                                "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"}
        command = container["command"]
        if command[1] == "starter.py":
            run = subprocess.run([sys.executable, *command[1:3], "--help"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0 and all(o in run.stdout for o in command[3::2]), command
        else:
            assert command == ["python", "worker.py"]


def test_the_worker_asks_for_what_the_drill_measured() -> None:
    [worker] = [c for c in containers() if c["name"] == "worker"]
    request = int(worker["resources"]["requests"]["memory"].removesuffix("Mi"))
    assert request >= WORKER_RSS_MIB
    [port] = worker["ports"]
    assert str(port["containerPort"]) == Settings(
        JOURNEYS_METRICS_ADDRESS="0.0.0.0:9464").metrics_address.rsplit(":", 1)[1]  # type: ignore[union-attr]
    [deployment] = [d for d in manifests() if d["metadata"]["name"] == "journeys-worker"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 35


def test_the_api_is_ready_when_it_can_route_and_alive_while_it_answers() -> None:
    """Readiness asks /ready (Temporal and the store answer), liveness /health: a replica whose
    Temporal is down gets no traffic, and is not restarted for it. Both are the app's routes."""
    from ingestion.http_api import create_app

    [api] = [c for c in containers() if c["name"] == "api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    routes = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    assert {"/ready", "/health"} <= routes
