"""The egress policy (issue 15, case 12): a templated webhook url or a browser's push endpoint
never reaches loopback, private, link-local, metadata ... addresses, in any notation; a name is
judged by what it resolves to, and the connection goes to the address that was judged.

Real servers on loopback stand in for the targets: each refused case checks that the server
got no request at all. A test injects the resolver's answer (``Egress(resolver=...)``) rather
than the system's DNS, so that a public-looking name can resolve to anything, offline.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.providers import OutgoingMessage, webpush
from activities.providers.egress import Egress
from activities.providers.webhook import WebhookProvider, build
from journeys.egress import (
    LOOPBACK,
    Policy,
    Refused,
    check_name,
    check_url,
    literal_address,
    parse_networks,
    refusal,
)
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings
from tests.helpers.vendors import Answer, LoopbackServer, WebhookReceiver, serving
from tests.test_webpush import SUBJECT, VAPID_DER, Browser, Profiles, b64url, point

SECRET = "egress-secret"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Every way of writing 127.0.0.1 (or another loopback address) that a resolver or browser takes.
LOOPBACK_NOTATIONS = ["127.0.0.1", "0x7f000001", "0X7F000001", "2130706433", "127.1", "127.0.1",
                      "0177.0.0.1", "0x7f.0.0.1", "017700000001", "127.0.0.1.", "127.255.255.254",
                      "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
                      "[::127.0.0.1]", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]"]
#: Other refused destinations, with the rule each is refused by.
OTHERS = [("169.254.169.254", "metadata address"), ("0xa9fea9fe", "metadata address"),
          ("[::ffff:169.254.169.254]", "metadata address"), ("[fd00:ec2::254]", "metadata address"),
          ("metadata.google.internal", "metadata address"),
          ("METADATA.google.internal.", "metadata address"),
          ("10.0.0.1", "private address"), ("012.1", "private address"), ("172.16.9.9", "private address"),
          ("192.168.1.1", "private address"), ("[::ffff:192.168.1.1]", "private address"),
          ("169.254.1.1", "link-local address"), ("[fe80::1]", "link-local address"),
          ("[fe80::1%25eth0]", "link-local address"), ("[fc00::1]", "unique-local address"),
          ("[fd12:3456::1]", "unique-local address"), ("0.0.0.0", "unspecified address"),
          ("0", "unspecified address"), ("[::]", "unspecified address"),
          ("224.0.0.1", "multicast address"), ("[ff02::1]", "multicast address"),
          ("255.255.255.255", "broadcast address"), ("100.64.0.1", "shared address (CGNAT)"),
          ("240.0.0.1", "reserved address"), ("192.0.2.1", "reserved address")]
PUBLIC = ["93.184.216.34", "8.8.8.8", "[2606:4700:4700::1111]", "1.1.1.1"]


def strict(*answers: str) -> Egress:
    """No allowance, and a resolver that answers ``answers`` for any name."""
    return Egress(Policy(), resolver=_answering(answers))


def _answering(answers: Sequence[str]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return list(answers)
    return resolve


# --- the rules, without I/O -------------------------------------------------------------------

@pytest.mark.parametrize("host", LOOPBACK_NOTATIONS)
def test_every_notation_of_loopback_is_refused(host: str) -> None:
    with pytest.raises(Refused, match="egress refused: loopback address"):
        check_url(f"http://{host}:8080/hook")


@pytest.mark.parametrize("host, rule", OTHERS)
def test_each_refused_range_names_its_rule(host: str, rule: str) -> None:
    with pytest.raises(Refused) as refused:
        check_url(f"https://{host}/x")
    assert refused.value.rule == rule


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_pass(host: str) -> None:
    check_url(f"https://{host}/x")


@pytest.mark.parametrize("url, rule", [
    ("http://user:pw@93.184.216.34/", "credentials in the url"),
    ("http://user@hooks.shop.test/", "credentials in the url"),
    ("ftp://hooks.shop.test/", "only http and https"), ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:6379/_", "only http and https"), ("http:///path", "no host"),
    ("http://999.1.1.1/", "malformed address"), ("http://1.2.3.4.5/", "malformed address"),
    ("http://0x1g.1/", "malformed address")])
def test_what_a_url_says_by_itself(url: str, rule: str) -> None:
    with pytest.raises(Refused) as refused:
        check_url(url)
    assert refused.value.rule == rule


def test_notations_read_as_a_resolver_reads_them() -> None:
    assert literal_address("0x7f000001") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0177.0.0.01") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("10.1") == ipaddress.ip_address("10.0.0.1")
    assert literal_address("192.168.257") == ipaddress.ip_address("192.168.1.1")
    assert literal_address("hooks.shop.test") is None and check_name("example.com") is None


def test_the_allowlist_admits_its_networks_and_metadata_only_by_name() -> None:
    allowed = parse_networks("10.0.0.0/8, 169.254.0.0/16, " + LOOPBACK)
    assert refusal(ipaddress.ip_address("10.9.8.7"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:10.9.8.7"), allowed) is None
    assert refusal(ipaddress.ip_address("::1"), allowed) is None
    assert refusal(ipaddress.ip_address("169.254.1.1"), allowed) is None
    assert refusal(ipaddress.ip_address("192.168.1.1"), allowed) == "private address"
    # a wide network does not open the metadata address; naming it alone does
    assert refusal(ipaddress.ip_address("169.254.169.254"), allowed) == "metadata address"
    assert refusal(ipaddress.ip_address("169.254.169.254"),
                   parse_networks("169.254.169.254/32")) is None


def test_the_setting_is_checked_when_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None, JOURNEYS_EGRESS_ALLOW="10.0.0.0/8,fd12::/16").egress_allow
    monkeypatch.setenv("JOURNEYS_EGRESS_ALLOW", "10.0.0.1/8")
    with pytest.raises(UsageError, match=r"JOURNEYS_EGRESS_ALLOW: '10\.0\.0\.1/8' is not a network"):
        load_settings()


# --- webhooks: the provider as the worker builds it --------------------------------------------

@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serving(WebhookReceiver(SECRET)) as server:
        yield server


OPENED: list[WebhookProvider] = []


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().aclose()


def hook(egress: Egress) -> WebhookProvider:
    OPENED.append(WebhookProvider(SECRET, 5.0, egress=egress))
    return OPENED[-1]


def message(url: str, **content: str) -> OutgoingMessage:
    return OutgoingMessage(idempotency_key="journey/a/ada:e1:hook", journey_id="a", node_id="hook",
                           user_id="ada", channel=Channel.webhook,
                           content={"url": url, "body": "{}", **content})


@pytest.mark.parametrize("host", [*LOOPBACK_NOTATIONS, "localhost", "LOCALHOST."])
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_a_templated_webhook_url_reaches_no_loopback_address(
        receiver: WebhookReceiver, host: str, method: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    # the worker as built from settings without JOURNEYS_EGRESS_ALLOW (the system's resolver)
    provider = build(Settings(_env_file=None, JOURNEYS_WEBHOOK_SECRET=SECRET), None, Channel.webhook)  # type: ignore[arg-type]
    OPENED.append(provider)
    outcome = await provider.deliver(message(f"http://{host}:{port}/hook", method=method))
    assert (outcome.status, outcome.reason) == ("failed", "egress refused: loopback address")
    assert receiver.received == []


@pytest.mark.parametrize("host, rule", OTHERS)
async def test_a_templated_webhook_url_reaches_no_refused_range(host: str, rule: str) -> None:
    outcome = await hook(strict()).deliver(message(f"http://{host}/latest/meta-data/"))
    assert (outcome.status, outcome.reason) == ("failed", f"egress refused: {rule}")


async def test_credentials_in_the_url_are_refused_never_sent(receiver: WebhookReceiver) -> None:
    url = receiver.url.replace("http://", "http://admin:hunter2@")
    outcome = await hook(Egress(Policy.parse(LOOPBACK))).deliver(message(url))
    assert (outcome.status, outcome.reason) == ("failed", "egress refused: credentials in the url")
    assert receiver.received == []


@pytest.mark.parametrize("answers, rule", [
    (["127.0.0.1"], "loopback address"), (["::1"], "loopback address"),
    (["93.184.216.34", "127.0.0.1"], "loopback address"),  # any refused answer refuses the name
    (["::ffff:169.254.169.254"], "metadata address"), (["10.0.0.7"], "private address"),
    (["fe80::1%eth0"], "link-local address")])
async def test_a_public_looking_name_is_judged_by_what_it_resolves_to(
        receiver: WebhookReceiver, answers: list[str], rule: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    outcome = await hook(strict(*answers)).deliver(message(f"https://hooks.shop.test:{port}/in"))
    assert (outcome.status, outcome.reason) == ("failed", f"egress refused: {rule}")
    assert receiver.received == []


async def test_the_connection_goes_to_the_checked_address_with_the_names_host(
        receiver: WebhookReceiver) -> None:
    """The name resolves once, by the policy's resolver, to a loopback address the allowance
    admits; the request arrives there (the system's DNS knows no such name) with Host = the name."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    port = receiver.url.rsplit(":", 1)[1]
    provider = hook(Egress(Policy.parse(LOOPBACK), resolver=resolve))
    outcome = await provider.deliver(message(f"http://hooks.shop.invalid:{port}/in"))
    assert outcome.status == "delivered", outcome
    assert [r.headers["host"] for r in receiver.received] == [f"hooks.shop.invalid:{port}"]
    assert "authorization" not in receiver.received[0].headers
    assert asked == ["hooks.shop.invalid"]


async def test_a_rebinding_name_is_connected_to_as_checked(receiver: WebhookReceiver) -> None:
    """A resolver that answers loopback (allowed here) and then 10.0.0.7: each connection is
    judged by its own answer, the refused one fails, nothing connects to an unjudged address."""
    answers = iter([["127.0.0.1"], ["10.0.0.7"]])

    async def resolve(host: str, port: int) -> list[str]:
        return next(answers)

    port = receiver.url.rsplit(":", 1)[1]
    url = f"http://rebind.shop.invalid:{port}/in"
    first = hook(Egress(Policy.parse(LOOPBACK), resolver=resolve))
    assert (await first.deliver(message(url))).status == "delivered"
    second = hook(Egress(Policy.parse(LOOPBACK), resolver=resolve))  # a new connection
    outcome = await second.deliver(message(url))
    assert (outcome.status, outcome.reason) == ("failed", "egress refused: private address")
    assert len(receiver.received) == 1


async def test_the_allowlist_admits_a_named_network(receiver: WebhookReceiver) -> None:
    settings = Settings(_env_file=None, JOURNEYS_WEBHOOK_SECRET=SECRET,
                        JOURNEYS_EGRESS_ALLOW="192.0.2.0/24,127.0.0.0/8")
    provider = build(settings, None, Channel.webhook)  # type: ignore[arg-type]
    OPENED.append(provider)
    port = receiver.url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", "0x7f000001", "127.1"):
        outcome = await provider.deliver(message(f"http://{host}:{port}/hook"))
        assert outcome.status == "delivered", outcome
    outcome = await provider.deliver(message(f"http://[::ffff:10.0.0.1]:{port}/hook"))
    assert outcome.reason == "egress refused: private address"  # 10/8 was not named
    assert len(receiver.received) == 3


async def test_a_redirect_to_a_refused_address_is_not_followed(receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(307, "", {"Location": "http://169.254.169.254/latest/"}))
    outcome = await hook(Egress(Policy.parse(LOOPBACK))).deliver(message(receiver.url))
    assert (outcome.status, outcome.reason) == ("failed", "webhook answered 307")
    assert len(receiver.received) == 1


# --- web push: endpoints come from the user's browser -------------------------------------------

class Anything(LoopbackServer):
    """Records every request, answers 201: had a push got here, the test would see it."""

    def answer(self, received: Any) -> Answer:
        return Answer(201)


def subscription(endpoint: str) -> dict[str, Any]:
    browser = Browser("b")
    return {"endpoint": endpoint,
            "keys": {"p256dh": b64url(point(browser.key)), "auth": b64url(browser.auth)}}


async def push(endpoints: list[str], **settings: Any) -> Any:
    profiles = Profiles()
    profiles.profiles["ada"] = {"web_push_subscriptions": [subscription(e) for e in endpoints]}
    provider = webpush.build(Settings(_env_file=None, vapid_private_key=VAPID_DER,
                                      vapid_subject=SUBJECT, **settings), profiles, Channel.web_push)
    return await provider.deliver(OutgoingMessage(
        idempotency_key="journey/a/ada:e1:push", journey_id="a", node_id="push", user_id="ada",
        channel=Channel.web_push, content={"title": "Hi", "body": "there"},
        profile=profiles.profiles["ada"]))


@pytest.mark.parametrize("host", [*LOOPBACK_NOTATIONS, "localhost"])
async def test_a_web_push_endpoint_reaches_no_loopback_address(host: str) -> None:
    with serving(Anything()) as target:
        port = target.url.rsplit(":", 1)[1]
        outcome = await push([f"http://{host}:{port}/push/ada"])
        assert outcome.status == "failed"
        assert outcome.reason == "web push: egress refused: loopback address (1 rejected)"
        assert target.received == []


@pytest.mark.parametrize("host, rule", OTHERS)
async def test_a_web_push_endpoint_reaches_no_refused_range(host: str, rule: str) -> None:
    outcome = await push([f"https://{host}/push/ada"])
    assert (outcome.status, outcome.reason) == ("failed", f"web push: egress refused: {rule} (1 rejected)")


async def test_web_push_credentials_in_the_endpoint_are_refused() -> None:
    with serving(Anything()) as target:
        outcome = await push([target.url.replace("http://", "http://u:p@") + "/push/ada"],
                             egress_allow=LOOPBACK)
        assert outcome.reason == "web push: egress refused: credentials in the url (1 rejected)"
        assert target.received == []


async def test_web_push_under_the_allowance_reaches_loopback() -> None:
    with serving(Anything()) as target:
        outcome = await push([target.url + "/push/ada", "http://169.254.169.254/push/ada"],
                             egress_allow=LOOPBACK)
        assert outcome.status == "delivered"  # the loopback one; the metadata one was refused
        assert len(target.received) == 1


# --- fuzzed: every notation of an address is judged as the address ------------------------------

@given(st.integers(0, 2**32 - 1))
@FUZZ
def test_every_notation_of_any_ipv4_address_gets_its_rule(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    a, b, c, d = ip.packed
    spellings = [str(ip), str(value), hex(value), f"0{value:o}", f"{a}.{b}.{(c << 8) | d}",
                 f"{a}.{(b << 16) | (c << 8) | d}", f"{hex(a)}.{b:#o}.{c}.{hex(d)}",
                 f"[::ffff:{ip}]", f"[64:ff9b::{ip}]"]
    rule = refusal(ip)
    for spelling in spellings:
        literal = check_name(spelling)
        assert literal is not None, spelling
        assert refusal(literal) == rule, (spelling, literal)


@given(st.text(max_size=40))
@FUZZ
def test_any_host_is_a_name_an_address_or_refused(host: str) -> None:
    try:
        found = check_name(host)
    except Refused as refused:
        assert refused.rule in {"no host", "metadata address", "malformed address"}
    else:
        assert found is None or isinstance(found, ipaddress.IPv4Address | ipaddress.IPv6Address)
