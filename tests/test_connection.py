"""Connecting as Temporal's own environment configuration says (issue 10, section 3): the
TEMPORAL_* variables and temporal.toml profiles the Temporal CLI reads, not settings of ours."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from connection import address_of, client_config, namespace_of
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings

PROFILES = """
[profile.default]
address = "127.0.0.1:7299"

[profile.cloud]
address = "journeys.a1b2c.tmprl.cloud:7233"
namespace = "journeys.a1b2c"

[profile.cloud.tls]
client_cert_path = "{folder}/client.pem"
client_key_path = "{folder}/client.key"

[profile.apikey]
address = "us-east-1.aws.api.temporal.io:7233"
namespace = "journeys.a1b2c"
api_key = "key-123"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(tmp_path / "client.key"), "-out", str(tmp_path / "client.pem"),
                    "-subj", "/CN=journeys-worker"], check=True, capture_output=True)
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(folder=tmp_path))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    monkeypatch.chdir(tmp_path)  # no .env of the repository's
    return path


def test_the_default_profile(config: Path) -> None:
    settings = load_settings()
    assert (address_of(settings), namespace_of(settings)) == ("127.0.0.1:7299", "default")
    assert "tls" not in client_config(settings)


def test_mtls_profile_reads_the_client_certificate_and_key(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    settings = load_settings()
    assert address_of(settings) == "journeys.a1b2c.tmprl.cloud:7233"
    tls = client_config(settings)["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == (config.parent / "client.pem").read_bytes()
    assert tls.client_private_key == (config.parent / "client.key").read_bytes()


def test_api_key_turns_tls_on(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "apikey")
    temporal = client_config(load_settings())
    assert (temporal["api_key"], temporal["tls"]) == ("key-123", True)
    assert temporal["namespace"] == "journeys.a1b2c"


def test_environment_variables_win_over_the_profile(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "staging")
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-from-env")
    temporal = client_config(load_settings())
    assert (temporal["namespace"], temporal["api_key"]) == ("staging", "key-from-env")
    # And an address given to Settings directly (tests, scripts) wins too.
    assert address_of(Settings(TEMPORAL_ADDRESS="127.0.0.1:7233")) == "127.0.0.1:7233"


def test_tls_from_environment_variables(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(config.parent / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(config.parent / "client.key"))
    tls = client_config(load_settings())["tls"]
    assert isinstance(tls, TLSConfig) and tls.client_cert and tls.client_private_key


def test_a_missing_profile_or_a_bad_address_is_one_line(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "nowhere")
    with pytest.raises(UsageError, match=r"temporal\.toml"):
        _ = client_config(load_settings())
    monkeypatch.delenv("TEMPORAL_PROFILE")
    config.write_text('[profile.default]\naddress = "no-port"\n')
    with pytest.raises(UsageError, match="'no-port' is not host:port"):
        _ = address_of(load_settings())
