"""mTLS end to end (issue 10, section 3): the dev server has no TLS, so nginx (Debian's
package) stands in front of it as a TLS frontend that demands a client certificate, as a
self-hosted cluster's or Temporal Cloud's does. A command whose temporal.toml profile names
the client certificate and key gets through; one without them is refused by the handshake."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.support import ROOT, dev_server, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists() and not os.environ.get("CI"),
    reason="nginx is missing (make test installs it as root; CI=true fails instead)")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(folder: Path) -> None:
    """A CA, a server certificate for localhost and a client certificate, both signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem"))
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=journeys-worker")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.csr"))
        _openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / "ca.pem"),
                 "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(folder / "san.ext"), "-out", str(folder / f"{name}.pem"))


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def frontend(env: WorkflowEnvironment,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """nginx on a loopback port: TLS with a required client certificate, gRPC passed on."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: make test installs it (apt-get install nginx)")
    folder = tmp_path_factory.mktemp("mtls")
    _certificates(folder)
    port, upstream = free_port(), env.client.service_client.config.target_host
    (folder / "nginx.conf").write_text(f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {folder}/server.pem;
    ssl_certificate_key {folder}/server.key;
    ssl_client_certificate {folder}/ca.pem;
    ssl_verify_client on;
    location / {{ grpc_pass grpc://{upstream}; }}
  }}
}}
""")
    process = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:  # until nginx listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {(folder / 'error.log').read_text()}")
                time.sleep(0.05)
        yield f"localhost:{port}", folder
    finally:
        process.terminate()
        process.wait(10)


def _list(folder: Path, profile: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    environ |= {"TEMPORAL_CONFIG_FILE": str(folder / "temporal.toml"), "TEMPORAL_PROFILE": profile,
                "JOURNEYS_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "starter.py", "list", "--json"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


async def test_a_client_certificate_gets_through_and_none_is_refused(
        frontend: tuple[str, Path], data_dir: Path) -> None:
    address, folder = frontend
    (folder / "temporal.toml").write_text(f"""
[profile.mtls]
address = "{address}"
namespace = "default"
[profile.mtls.tls]
server_name = "localhost"
server_ca_cert_path = "{folder}/ca.pem"
client_cert_path = "{folder}/client.pem"
client_key_path = "{folder}/client.key"

[profile.nocert]
address = "{address}"
namespace = "default"
[profile.nocert.tls]
server_name = "localhost"
server_ca_cert_path = "{folder}/ca.pem"
""")
    run = await asyncio.to_thread(_list, folder, "mtls", data_dir)
    assert run.returncode == 0, run.stderr
    assert '"journeys": []' in run.stdout  # through nginx to the dev server, which has none yet
    refused = await asyncio.to_thread(_list, folder, "nocert", data_dir)
    assert refused.returncode == 2 and "cannot reach Temporal" in refused.stderr, refused.stderr
