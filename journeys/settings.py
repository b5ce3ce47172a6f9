"""Settings, from the environment (and a ``.env`` file): one place for every knob."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from journeys.language.problems import UsageError
from journeys.numbers import whole_number

#: Where ``serve`` answers by default (JOURNEYS_PUBLIC_URL's default).
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Temporal's own environment configuration (temporalio.envconfig), as the Temporal CLI reads
    # it: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, and profiles
    # in a temporal.toml (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE). The two fields only carry
    # an address or namespace given here (or in .env) over the profile's.
    address_given: str | None = Field(default=None, alias="TEMPORAL_ADDRESS")
    namespace_given: str | None = Field(default=None, alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="journeys", alias="JOURNEYS_TASK_QUEUE")
    data_dir: Path = Field(default=Path(".journeys"), alias="JOURNEYS_DATA_DIR")
    journeys_dir: Path = Field(default=Path("examples"), alias="JOURNEYS_DIR")
    database_url: str | None = Field(
        default=None, alias="JOURNEYS_DATABASE_URL",
        description="SQLAlchemy URL of the profile and outbox store; "
                    "default: SQLite in the data dir.")
    legacy_ids: bool = Field(
        default=True, alias="JOURNEYS_LEGACY_IDS",
        description="Also route events to journeys started under the ids of release 0.1 "
                    "(journey-<journey>-<user>); turn off once none of them runs.")

    write_key: str | None = Field(default=None, alias="JOURNEYS_WRITE_KEY")
    # --- links in messages (one-click unsubscribe), answered by `serve` without the write key --
    public_url: str = Field(
        default=DEFAULT_PUBLIC_URL, alias="JOURNEYS_PUBLIC_URL",
        description="The address at which users reach `serve` (https://journeys.shop.example): "
                    "the start of the unsubscribe links in messages.")
    link_secret: str | None = Field(
        default=None, alias="JOURNEYS_LINK_SECRET",
        description="The secret that signs the links in messages; default: one made once and "
                    "kept in the store (every process sharing the store agrees on it).")
    unsubscribe_mailto: str | None = Field(
        default=None, alias="JOURNEYS_UNSUBSCRIBE_MAILTO",
        description="An address for List-Unsubscribe's mailto, beside the link: its messages "
                    "(the token in the subject) are the operator's to act on.")
    behaviour_days: int = Field(
        default=400, ge=0, le=3660, alias="JOURNEYS_BEHAVIOUR_DAYS",
        description="Days of what users did (counts per event and day) kept for segments; older "
                    "ones are pruned daily. 0: nothing is counted (segments' did and did_not "
                    "then match nobody, and did_not everybody).")
    task_priority: bool = Field(
        default=True, alias="JOURNEYS_TASK_PRIORITY",
        description="Runs carry a task-queue priority (transactional first, a broadcast's users "
                    "last) and their journey as fairness key; false: none (a server without them).")
    audience_rate: float = Field(
        default=100.0, gt=0, le=10_000, alias="JOURNEYS_AUDIENCE_RATE",
        description="Users an audience journey's occurrence enters per second, at most (the "
                    "journeys that events start meanwhile keep their pace).")
    audience_delay: float = Field(
        default=0.005, ge=0, le=60, alias="JOURNEYS_AUDIENCE_DELAY",
        description="Seconds of queueing an audience run may add to Temporal's answers before it "
                    "slows down (its rate adapts, up to JOURNEYS_AUDIENCE_RATE); 0: always at "
                    "JOURNEYS_AUDIENCE_RATE.")
    audience_page: int = Field(
        default=500, ge=1, le=10_000, alias="JOURNEYS_AUDIENCE_PAGE",
        description="Users an audience run reads and enters per activity (its heartbeats "
                    "resume a page mid-way).")
    route_timeout: float = Field(
        default=10.0, gt=0, le=300, alias="JOURNEYS_ROUTE_TIMEOUT",
        description="Seconds an HTTP request, or an event of `event` and `ingest`, may take to "
                    "route; past it the event is not routed (the API answers 503: send it again).")
    # --- the HTTP API's guard against slow or many clients (a proxy in front may do more) -----
    http_max_connections: int = Field(
        default=1000, ge=2, le=100_000, alias="JOURNEYS_HTTP_MAX_CONNECTIONS",
        description="Connections the HTTP API holds at once; past it, a new one pushes out the "
                    "oldest one that is idle or still sending its headers.")
    http_header_seconds: float = Field(
        default=10.0, gt=0, le=300, alias="JOURNEYS_HTTP_HEADER_SECONDS",
        description="Seconds a client has to send a request's headers (and an idle connection "
                    "is kept) before the API closes it.")
    http_body_seconds: float = Field(
        default=30.0, gt=0, le=600, alias="JOURNEYS_HTTP_BODY_SECONDS",
        description="Seconds a client has to send a request's body: past it, 408.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", alias="JOURNEYS_LOG_FORMAT",
        description="auto: readable lines when stderr is a terminal, JSON lines otherwise; or "
                    "always json, always console.")
    metrics_address: str | None = Field(
        default=None, alias="JOURNEYS_METRICS_ADDRESS",
        description="host:port serving Prometheus metrics (the SDK's and the project's); off if unset.")

    # --- delivery (one block per provider; a provider serves its channels once it is set) ----
    send_timeout: float = Field(default=30.0, gt=0, le=600, alias="JOURNEYS_SEND_TIMEOUT",
                                description="Seconds one delivery attempt may take.")
    send_unknown_retries: int = Field(
        default=2, ge=0, le=20, alias="JOURNEYS_SEND_UNKNOWN_RETRIES",
        description="Retries of a request that left and got no answer (the vendor may have "
                    "taken it); then the message is recorded 'unknown'.")
    push_max_tokens: int = Field(
        default=20, ge=1, le=500, alias="JOURNEYS_PUSH_MAX_TOKENS",
        description="Push tokens (and web push subscriptions) a message goes to, the newest "
                    "(last in the profile's list) first; older ones are left out.")
    smtp_host: str | None = Field(default=None, alias="JOURNEYS_SMTP_HOST")
    smtp_port: int = Field(default=587, gt=0, lt=65536, alias="JOURNEYS_SMTP_PORT")
    smtp_username: str | None = Field(default=None, alias="JOURNEYS_SMTP_USERNAME")
    smtp_password: str | None = Field(default=None, alias="JOURNEYS_SMTP_PASSWORD")
    smtp_tls: Literal["starttls", "tls", "none"] = Field(default="starttls", alias="JOURNEYS_SMTP_TLS")
    email_from: str | None = Field(default=None, alias="JOURNEYS_EMAIL_FROM")
    webhook_secret: str | None = Field(default=None, alias="JOURNEYS_WEBHOOK_SECRET")
    fcm_credentials: Path | None = Field(default=None, alias="JOURNEYS_FCM_CREDENTIALS")
    fcm_url: str = Field(default="https://fcm.googleapis.com", alias="JOURNEYS_FCM_URL")
    twilio_account_sid: str | None = Field(default=None, alias="JOURNEYS_TWILIO_ACCOUNT_SID")
    twilio_auth_token: str | None = Field(default=None, alias="JOURNEYS_TWILIO_AUTH_TOKEN")
    twilio_from: str | None = Field(default=None, alias="JOURNEYS_TWILIO_FROM")
    twilio_whatsapp_from: str | None = Field(default=None, alias="JOURNEYS_TWILIO_WHATSAPP_FROM")
    twilio_url: str = Field(default="https://api.twilio.com", alias="JOURNEYS_TWILIO_URL")
    vapid_private_key: str | None = Field(default=None, alias="JOURNEYS_VAPID_PRIVATE_KEY")
    vapid_subject: str | None = Field(default=None, alias="JOURNEYS_VAPID_SUBJECT")
    egress_allow: str | None = Field(
        default=None, alias="JOURNEYS_EGRESS_ALLOW",
        description="Networks a webhook url or web-push endpoint may reach although they are "
                    "loopback, private or link-local, e.g. 10.0.0.0/8,fd12::/16 (--dev adds "
                    "loopback); metadata addresses only when named alone (169.254.169.254/32).")
    intellinode_refresh: float = Field(
        default=300.0, ge=0, le=86_400, alias="JOURNEYS_INTELLINODE_REFRESH",
        description="Seconds an automated IntelliNODE's shares are kept before they are "
                    "recomputed from the paths' results (per worker).")
    # --- Worker Versioning (both names, or neither: off) --------------------------------------
    deployment_name: str | None = Field(default=None, alias="JOURNEYS_DEPLOYMENT_NAME")
    build_id: str | None = Field(default=None, alias="JOURNEYS_BUILD_ID")
    versioning_behavior: Literal["auto_upgrade", "pinned"] = Field(
        default="auto_upgrade", alias="JOURNEYS_VERSIONING_BEHAVIOR",
        description="What a running journey does when a new version becomes current: move to "
                    "it at its next task (auto_upgrade) or finish on its own version (pinned).")
    caps: str | None = Field(default=None, alias="JOURNEYS_CAPS",
                             description="Frequency caps per user across journeys, e.g. "
                                         "push=3/1d,email=1/12h,all=5/1d.")

    @field_validator("caps")
    @classmethod
    def _caps(cls, value: str | None) -> str | None:
        from journeys.store.caps import parse_caps  # the store's tables: only when caps are set

        if value:
            parse_caps(value)  # a cap that cannot work stops the worker before anything starts
        return value

    @field_validator("egress_allow")
    @classmethod
    def _egress(cls, value: str | None) -> str | None:
        from journeys.egress import parse_networks

        parse_networks(value)  # a network that cannot be read stops the worker at start
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"'{value}' is not an http(s) address without a query "
                             "(https://journeys.shop.example)")
        return value.rstrip("/")

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or any(c in value for c in " \t\r\n<>,;?")):
            raise ValueError(f"'{value}' is not an email address")
        return value

    @model_validator(mode="after")
    def _deployment(self) -> Settings:
        if bool(self.deployment_name) != bool(self.build_id):
            given = "JOURNEYS_DEPLOYMENT_NAME" if self.deployment_name else "JOURNEYS_BUILD_ID"
            raise ValueError(f"{given} is set without its pair: Worker Versioning needs "
                             "JOURNEYS_DEPLOYMENT_NAME and JOURNEYS_BUILD_ID both")
        return self

    @field_validator("address_given", "metrics_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return value if value is None else check_address(value)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'journeys.db'}"


def check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    number = whole_number(port) if port == port.strip() else None
    if not sep or not host or number is None or not 0 < number < 65536:
        raise ValueError(f"'{value}' is not host:port with a port number from 1 to 65535")
    return value


def load_settings() -> Settings:
    """The settings, or a one-line UsageError naming the variable that is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        name = Settings.model_fields[field].alias if field in Settings.model_fields else field
        raise UsageError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from None
