"""Loopback stand-ins for the HTTP vendors: real HTTP/1.1 servers on 127.0.0.1 that check each
vendor's request shape and auth the way the vendor does, and answer as it does.

Each runs a ``ThreadingHTTPServer`` in a thread, so it answers while the test's event loop (or
google-auth's token refresh in a worker thread) waits on it. ``script`` holds answers to give
instead of the normal one, first come first served (``None``: the normal answer), so a test can
stage a 429, a 503 or an answer that comes too late.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from google.auth import jwt


@dataclass
class Received:
    """A request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Answer:
    status: int
    body: bytes | dict[str, Any] | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (the request is recorded at once)


class LoopbackServer:
    """A real HTTP server on a free port; subclasses decide the answers."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer | None] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.command, self.path,
                                    {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length))
                with owner._lock:
                    owner.received.append(received)
                answer = owner.answer(received)
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body
                headers = dict(answer.headers)
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(answer.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def scripted(self) -> Answer | None:
        """The next staged answer, if any."""
        with self._lock:
            return self.script.pop(0) if self.script else None

    def answer(self, received: Received) -> Answer:
        raise NotImplementedError

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(server: LoopbackServer) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.close()


# --- webhook receiver -------------------------------------------------------------------------

class WebhookReceiver(LoopbackServer):
    """Checks the signature as a receiver would; answers 200 with an X-Request-Id."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self._ids = itertools.count(1)

    def signature_ok(self, received: Received) -> bool:
        header = received.headers.get("x-journeys-signature", "")
        match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
        if not match or abs(time.time() - int(match[1])) > 300:
            return False
        mac = hmac.new(self.secret.encode(), match[1].encode() + b"." + received.body, hashlib.sha256)
        return hmac.compare_digest(mac.hexdigest(), match[2])

    def answer(self, received: Received) -> Answer:
        if not self.signature_ok(received):
            return Answer(401, "bad signature")
        return self.scripted() or Answer(200, {"ok": True},
                                         {"X-Request-Id": f"req-{next(self._ids)}"})


# --- Twilio -----------------------------------------------------------------------------------

_E164 = re.compile(r"\+[1-9]\d{6,14}")


def twilio_error(status: int, code: int, message: str) -> Answer:
    """Twilio's error body."""
    return Answer(status, {"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})


class FakeTwilio(LoopbackServer):
    """The Messages API of one account: basic auth, form fields, E.164 numbers."""

    def __init__(self, sid: str, token: str) -> None:
        super().__init__()
        self.sid = sid
        self.token = token
        self._ids = itertools.count(1)

    def answer(self, received: Received) -> Answer:
        if received.method != "POST" or received.path != f"/2010-04-01/Accounts/{self.sid}/Messages.json":
            return twilio_error(404, 20404, "The requested resource was not found")
        expected = base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if received.headers.get("authorization") != f"Basic {expected}":
            return twilio_error(401, 20003, "Authenticate")
        if not received.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return twilio_error(400, 20001, "Unsupported content type")
        staged = self.scripted()
        if staged:
            return staged
        form = received.form()
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        whatsapp = to.startswith("whatsapp:")
        if whatsapp != sender.startswith("whatsapp:"):
            return twilio_error(400, 63007, "Twilio could not find a Channel with the specified From address")
        if not _E164.fullmatch(to.removeprefix("whatsapp:")):
            return twilio_error(400, 21211, "The 'To' number is not a valid phone number.")
        if not body:
            return twilio_error(400, 21602, "Message body is required.")
        sid = f"SM{next(self._ids):032x}"
        return Answer(201, {"sid": sid, "status": "queued", "to": to, "from": sender, "body": body,
                            "account_sid": self.sid})


# --- FCM --------------------------------------------------------------------------------------

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The audience Google's token endpoint requires in the assertion, whatever its URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def fcm_error(status: int, name: str, message: str, error_code: str | None = None) -> Answer:
    """FCM v1's error body (google.rpc.Status with an FcmError detail)."""
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if error_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": error_code}]
    return Answer(status, {"error": error})


class FakeFCM(LoopbackServer):
    """Google's OAuth token endpoint (``/token``) and FCM's HTTP v1 send, for one project."""

    def __init__(self, project: str, client_email: str, public_key_pem: str) -> None:
        super().__init__()
        self.project = project
        self.client_email = client_email
        self.public_key_pem = public_key_pem
        self.tokens_issued: list[str] = []
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.token_delay = 0.0  # seconds the token endpoint takes
        self._ids = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def sends(self) -> list[Received]:
        return [r for r in self.received if r.path != "/token"]

    def _token(self, received: Received) -> Answer:
        form = received.form()
        if form.get("grant_type") != JWT_BEARER:
            return Answer(400, {"error": "unsupported_grant_type"})
        try:  # signed by the service account's key, for Google's token endpoint
            claims = jwt.decode(form.get("assertion", ""), certs=self.public_key_pem,
                                audience=GOOGLE_TOKEN_AUDIENCE)
        except Exception as exc:
            return Answer(400, {"error": "invalid_grant", "error_description": str(exc)})
        if claims.get("iss") != self.client_email or FCM_SCOPE not in claims.get("scope", "").split():
            return Answer(400, {"error": "invalid_grant", "error_description": "bad iss or scope"})
        time.sleep(self.token_delay)
        token = f"ya29.test-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return Answer(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def answer(self, received: Received) -> Answer:
        if received.path == "/token":
            return self._token(received)
        if received.method != "POST" or received.path != f"/v1/projects/{self.project}/messages:send":
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.")
        bearer = received.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens_issued:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        staged = self.scripted()
        if staged:
            return staged
        try:
            message = received.json()["message"]
            token = message["token"]
            assert isinstance(token, str) and token
            assert all(isinstance(v, str) for v in message.get("data", {}).values())
            assert set(message.get("notification", {})) <= {"title", "body", "image"}
        except (ValueError, KeyError, TypeError, AssertionError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if token in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if token in self.invalid:
            return fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM "
                                                      "registration token", "INVALID_ARGUMENT")
        return Answer(200, {"name": f"projects/{self.project}/messages/0:{next(self._ids)}"})


def service_account(tmp_path: Any, token_uri: str, project: str = "journeys-test",
                    email: str = "push@journeys-test.iam.gserviceaccount.com") -> tuple[Any, str]:
    """A fresh RSA key and a service-account JSON file for it: (path, public key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "k1",
        "private_key": private_pem, "client_email": email, "client_id": "1",
        "token_uri": token_uri}))
    return path, public_pem



def assert_words_kept_out(error: BaseException, words: str) -> None:
    """A retried failure's text (what the SDK logs at WARNING, with its traceback and chained
    exceptions, and what the history keeps) holds none of the vendor's ``words``; its
    ``detail`` (the debug log) does."""
    import traceback

    logged = "".join(traceback.format_exception(error))
    assert words not in logged, logged
    assert words in getattr(error, "detail", "")


# --- held answers and TLS -----------------------------------------------------------------------

class Holding:
    """Mixin state for a stand-in that holds some requests unanswered until ``release`` (a
    vendor that took the request and answers late, or never): counts requests in flight."""

    def _init_holding(self) -> None:
        self.released = threading.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self._flight_lock = threading.Lock()

    def hold(self) -> None:
        with self._flight_lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.released.wait(60)
        finally:
            with self._flight_lock:
                self.in_flight -= 1


class HoldingFCM(FakeFCM, Holding):
    """FCM that holds the sends to the tokens in ``held`` (every token if ``hold_all``), and
    counts the sends per token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_holding()
        self.held: set[str] = set()
        self.hold_all = False

    def per_token(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sent in self.sends():
            token = sent.json()["message"]["token"]
            counts[token] = counts.get(token, 0) + 1
        return counts

    def answer(self, received: Received) -> Answer:
        if received.path != "/token":
            token = received.json().get("message", {}).get("token")
            if self.hold_all or token in self.held:
                self.hold()
        return super().answer(received)


def self_signed(directory: Any, host: str = "127.0.0.1") -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for ``host``: no client trusts it."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def over_tls(server: LoopbackServer, context: ssl.SSLContext) -> LoopbackServer:
    """Serve ``server`` over TLS (before it starts): its url becomes https."""
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.url = server.url.replace("http://", "https://", 1)
    return server
