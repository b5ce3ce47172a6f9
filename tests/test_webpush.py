"""The web push provider against a real push service on 127.0.0.1 that checks what a browser
vendor's service checks: the VAPID token (signature, ``aud``, ``sub``, ``exp``), the aes128gcm
body (decrypted with the subscription's own private key and auth secret) and the headers."""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from activities.providers import OutgoingMessage, TransientError, webpush
from activities.providers.registry import VENDORS
from journeys.egress import LOOPBACK
from journeys.events import tracking_id
from journeys.language.models import Channel
from journeys.settings import Settings

SUBJECT = "mailto:ops@shop.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


VAPID_KEY = ec.generate_private_key(ec.SECP256R1())
VAPID_DER = b64url(VAPID_KEY.private_bytes(serialization.Encoding.DER,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
VAPID_PUBLIC = b64url(point(VAPID_KEY))  # what the page subscribed with (applicationServerKey)


@dataclass
class Browser:
    """One subscription, with the secrets only the browser holds."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))


class PushService(ThreadingHTTPServer):
    """Answers ``POST /push/<browser>`` with the status set for that browser, once the request
    passed every check (else 400 with the check that failed, so a test sees why)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        self.browsers: dict[str, Browser] = {}
        self.status: dict[str, int] = {}
        self.slow: set[str] = set()
        self.received: list[dict[str, Any]] = []  # the decrypted payloads
        self.release = threading.Event()

    def subscribe(self, name: str, status: int = 201) -> dict[str, Any]:
        browser = self.browsers[name] = Browser(name)
        self.status[name] = status
        return {"endpoint": f"{self.origin}/push/{name}",
                "keys": {"p256dh": b64url(point(browser.key)), "auth": b64url(browser.auth)}}

    def check(self, name: str, headers: Any, body: bytes) -> dict[str, Any]:
        """The decrypted payload, or AssertionError naming what is wrong."""
        assert headers["Content-Encoding"] == "aes128gcm", headers["Content-Encoding"]
        assert headers["TTL"] and int(headers["TTL"]) > 0, headers["TTL"]
        claims = verify_vapid(headers["Authorization"])
        assert claims["aud"] == self.origin, claims
        assert claims["sub"] == SUBJECT, claims
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
        browser = self.browsers[name]
        plain = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth,
                                 version="aes128gcm")
        return dict(json.loads(plain))


def verify_vapid(authorization: str) -> dict[str, Any]:
    """RFC 8292: ``vapid t=<JWT>, k=<public key>``; the JWT is ES256, signed by that key, which
    is the application server key the browser subscribed with."""
    scheme, _, rest = authorization.partition(" ")
    assert scheme.lower() == "vapid", authorization
    params = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert params["k"] == VAPID_PUBLIC, "not the key the browser subscribed with"
    signed, _, signature = params["t"].rpartition(".")
    header = json.loads(unb64url(signed.split(".")[0]))
    assert header["alg"] == "ES256", header
    raw = unb64url(signature)
    der = encode_dss_signature(int(binascii.hexlify(raw[:32]), 16), int(binascii.hexlify(raw[32:]), 16))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(params["k"]))
    key.verify(der, signed.encode(), ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature
    return dict(json.loads(unb64url(signed.split(".")[1])))


class _Handler(BaseHTTPRequestHandler):
    server: PushService

    def do_POST(self) -> None:
        name = self.path.removeprefix("/push/")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if name in self.server.slow:
            self.server.release.wait(10)  # longer than the provider waits
        try:
            self.server.received.append(self.server.check(name, self.headers, body))
            status = self.server.status[name]
        except Exception as exc:
            status, body = 400, f"check failed: {type(exc).__name__}: {exc}".encode()
        else:
            body = b"slow down" if status == 429 else b""
        try:
            self.send_response(status)
            if status == 201:
                self.send_header("Location", f"{self.server.origin}/message/{name}-1")
            if status == 429:
                self.send_header("Retry-After", "30")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the provider gave up waiting

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Profiles:
    """An in-memory ProfileEditor."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}

    def remove_from_profile(self, user_id: str, property: str, value: Any) -> None:
        items = self.profiles.get(user_id, {}).get(property)
        if isinstance(items, list):
            self.profiles[user_id][property] = [item for item in items if item != value]


@pytest.fixture(scope="module")
def service() -> Iterator[PushService]:
    server = PushService()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def settings(**overrides: Any) -> Settings:
    # The push services here are on loopback: the allowance `worker.py --dev` gives.
    values: dict[str, Any] = {"vapid_private_key": VAPID_DER, "vapid_subject": SUBJECT,
                              "send_timeout": 5.0, "egress_allow": LOOPBACK, **overrides}
    return Settings(_env_file=None, **values)


def send(service: PushService, profiles: Profiles, user: str, subscriptions: list[dict[str, Any]],
         timeout: float = 5.0) -> tuple[webpush.WebPushProvider, OutgoingMessage]:
    profiles.profiles[user] = {"web_push_subscriptions": list(subscriptions)}
    provider = webpush.build(settings(send_timeout=timeout), profiles, Channel.web_push)
    message = OutgoingMessage(
        idempotency_key=f"journey/abandoned-cart/{user}:e1:push-reminder", journey_id="abandoned-cart",
        node_id="push-reminder", user_id=user, channel=Channel.web_push,
        content={"title": "Still thinking it over?", "body": "The iPhone 14 is waiting.",
                 "url": "https://shop.test/p"},
        profile=profiles.profiles[user])
    return provider, message


async def test_delivered_payload_decrypts_and_vapid_verifies(service: PushService) -> None:
    profiles = Profiles()
    provider, message = send(service, profiles, "ada", [service.subscribe("ada-laptop")])
    service.received.clear()
    outcome = await provider.deliver(message)
    assert outcome.status == "delivered", outcome.reason
    assert outcome.provider_message_id == f"{service.origin}/message/ada-laptop-1"
    assert service.received == [{"title": "Still thinking it over?", "body": "The iPhone 14 is waiting.",
                                 "url": "https://shop.test/p", "idempotency_key": message.idempotency_key,
                                 "message_id": tracking_id(message.idempotency_key)}]
    assert len(profiles.profiles["ada"]["web_push_subscriptions"]) == 1


async def test_gone_subscriptions_are_removed_and_none_left_is_unreachable(service: PushService) -> None:
    profiles = Profiles()
    subscriptions = [service.subscribe("bob-old", 410), service.subscribe("bob-expired", 404)]
    provider, message = send(service, profiles, "bob", subscriptions)
    outcome = await provider.deliver(message)
    assert outcome.status == "unreachable", outcome
    assert profiles.profiles["bob"]["web_push_subscriptions"] == []
    # and with no subscription at all, nothing is sent
    assert (await provider.deliver(message.model_copy(update={"profile": {}}))).status == "unreachable"


async def test_one_gone_one_accepted_is_delivered(service: PushService) -> None:
    profiles = Profiles()
    gone, live = service.subscribe("cy-old", 410), service.subscribe("cy-phone")
    provider, message = send(service, profiles, "cy", [gone, live])
    outcome = await provider.deliver(message)
    assert outcome.status == "delivered", outcome.reason
    assert profiles.profiles["cy"]["web_push_subscriptions"] == [live]


async def test_429_is_transient(service: PushService) -> None:
    provider, message = send(service, Profiles(), "dee", [service.subscribe("dee-busy", 429)])
    with pytest.raises(TransientError, match=r"429 \(Retry-After 30\)") as raised:
        await provider.deliver(message)
    assert raised.value.retry_after == 30  # the send activity makes it the next attempt's delay


async def test_400_is_failed(service: PushService) -> None:
    profiles = Profiles()
    provider, message = send(service, profiles, "eve", [service.subscribe("eve-bad", 400)])
    outcome = await provider.deliver(message)
    assert outcome.status == "failed"
    assert "400" in (outcome.reason or "")
    assert len(profiles.profiles["eve"]["web_push_subscriptions"]) == 1  # kept: not gone


async def test_a_service_that_answers_too_late_is_transient(service: PushService) -> None:
    service.slow.add("fay-slow")
    provider, message = send(service, Profiles(), "fay", [service.subscribe("fay-slow")], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"no answer within 0\.24s"):
        await provider.deliver(message)
    assert time.monotonic() - started < 2


async def test_connection_refused_is_transient(service: PushService) -> None:
    subscription = {**service.subscribe("gil"), "endpoint": "http://127.0.0.1:9/push/gil"}
    provider, message = send(service, Profiles(), "gil", [subscription])
    with pytest.raises(TransientError):
        await provider.deliver(message)


def test_settings_registry_and_key_formats() -> None:
    assert VENDORS[Channel.web_push] == "webpush"
    empty = Settings(_env_file=None, vapid_private_key=None, vapid_subject=None)
    assert webpush.missing(empty, Channel.web_push) == ["JOURNEYS_VAPID_PRIVATE_KEY",
                                                        "JOURNEYS_VAPID_SUBJECT"]
    assert webpush.missing(settings(), Channel.web_push) == []
    pem = VAPID_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    raw = b64url(VAPID_KEY.private_numbers().private_value.to_bytes(32, "big"))
    for key in (VAPID_DER, pem, pem.replace("\n", "\\n"), raw):
        assert b64url(point(webpush.load_vapid(key).private_key)) == VAPID_PUBLIC
    with pytest.raises(ValueError, match="JOURNEYS_VAPID_SUBJECT"):
        webpush.build(settings(vapid_subject="ops@shop.test"), Profiles(), Channel.web_push)
    with pytest.raises(ValueError, match="JOURNEYS_VAPID_PRIVATE_KEY"):
        webpush.build(settings(vapid_private_key="not-a-key"), Profiles(), Channel.web_push)


async def test_a_retried_push_keeps_the_services_words_out_of_the_failure(service: PushService) -> None:
    provider, message = send(service, Profiles(), "dee", [service.subscribe("dee-slow", 429)])
    with pytest.raises(TransientError) as raised:
        await provider.deliver(message)
    assert "slow down" not in str(raised.value)  # the service's body, not its status


async def test_the_newest_subscriptions_only_a_few_at_a_time(service: PushService) -> None:
    """30 browsers: the newest JOURNEYS_PUSH_MAX_TOKENS (20; the list's last) get the push."""
    subscriptions = [service.subscribe(f"hal-{i:02d}") for i in range(30)]
    provider, message = send(service, Profiles(), "hal", subscriptions)
    service.received.clear()
    assert (await provider.deliver(message)).status == "delivered"
    assert len(service.received) == 20
    bounded = webpush.build(settings(push_max_tokens=3), Profiles(), Channel.web_push)
    service.received.clear()
    assert (await bounded.deliver(message)).status == "delivered" and len(service.received) == 3


async def test_a_browser_that_took_the_push_never_gets_it_again(service: PushService) -> None:
    """[took, slow]: slow answers too late. An attempt after (the same message, its ledger)
    pushes to slow only; after the unanswered bound it reads unknown without a request."""
    from activities.providers.ledger import Ledger, using

    service.slow.add("ivy-slow")
    took, slow = service.subscribe("ivy-took"), service.subscribe("ivy-slow")
    provider, message = send(service, Profiles(), "ivy", [took, slow], timeout=0.3)
    service.received.clear()
    with using(Ledger(unknown_retries=0)) as ledger:
        assert (await provider.deliver(message)).status == "delivered"
    assert [r["idempotency_key"] for r in service.received] == [message.idempotency_key]
    requests = len(service.received)
    with using(Ledger(ledger.marks, unknown_retries=0)):
        again = await provider.deliver(message)
    assert again.status == "delivered" and len(service.received) == requests  # nobody pushed again


async def test_a_push_service_whose_certificate_does_not_verify_is_a_failed_push_naming_tls(
        service: PushService, tmp_path: Path) -> None:
    from tests.helpers.vendors import WebhookReceiver, over_tls, self_signed, serving

    with serving(over_tls(WebhookReceiver("s"), self_signed(tmp_path))) as tls:
        subscription = {**service.subscribe("jo"), "endpoint": f"{tls.url}/push/jo"}
        provider, message = send(service, Profiles(), "jo", [subscription])
        outcome = await provider.deliver(message)
    assert outcome.status == "failed" and "TLS certificate not trusted" in (outcome.reason or "")
