"""Settings every service shares; each service subclasses with its own env prefix.

``BookingSettings(ServiceSettings)`` with ``env_prefix="BOOKING_"`` reads
``BOOKING_DATABASE_URL``, ``BOOKING_KAFKA_BOOTSTRAP_SERVERS`` and so on. Defaults match the
local infrastructure that ``make up`` provisions, so a developer needs no environment at all.
"""

from __future__ import annotations

import enum

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from platform_runtime.errors import KernelError
from platform_runtime.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol

DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"
"""HS256 secret used when none is configured. It is public (it is in this repository), so a
process that serves the API refuses to start with it unless ``<PREFIX>DEVELOPMENT`` is true
(:meth:`ServiceSettings.check_serving`), and warns in its log when it starts with it."""


class InsecureSettings(KernelError):
    """Settings fit for a development machine only, in a process that is not told it runs on
    one; the message says what to set."""


class Role(enum.StrEnum):
    """What one process of a service does; each scales on its own replica count.

    ``api`` serves the HTTP API only (several uvicorn workers per process); ``worker`` runs
    the background work (outbox relay, consumers, sweepers, dispatchers) and serves only
    health and metrics; ``all`` does both in one process (a laptop, the tests).
    """

    ALL = "all"
    API = "api"
    WORKER = "worker"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    service_name: str = "service"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/postgres"
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=12, ge=1)
    """Partitions of the topics a service creates when missing: the most replicas of one
    consumer group that share its work. An event topic can never be grown later without
    moving keys to other partitions (losing their order), so this is sized up front."""
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=0)
    kafka_request_timeout_ms: int = Field(default=15_000, ge=1_000)
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    """``PLAINTEXT`` (no TLS, no login: development and tests), ``SSL``, ``SASL_SSL`` (TLS and
    a SCRAM login: production) or ``SASL_PLAINTEXT`` (refused outside ``development``)."""
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    """Never logged; with ``SASL_SSL`` or ``SASL_PLAINTEXT`` only."""
    kafka_ssl_ca_file: str | None = None
    """PEM file of the authorities that sign the broker's certificate; unset: the system's."""
    kafka_ssl_cert_file: str | None = None
    """PEM certificate of this client, for a broker that asks for one (mutual TLS)."""
    kafka_ssl_key_file: str | None = None
    """Unencrypted PEM private key of ``kafka_ssl_cert_file``."""

    development: bool = False
    """A development machine or a test run: the API may accept tokens signed with the public
    :data:`DEV_JWT_SECRET`. Never on where anyone but developers reaches the service."""
    jwt_algorithm: str = "HS256"
    jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    """HS* only; unset or empty: :data:`DEV_JWT_SECRET`, which needs ``development``."""
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    role: Role = Role.ALL
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes of ``serve`` (each with its own database pool)."""
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest request body accepted: a larger one is answered 413 before it is read (a body
    whose declared length is larger is not read at all), so no request can fill the memory."""
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    """Largest request line plus headers: more is answered 431 and the connection closed."""
    http_keep_alive_s: int = Field(default=75, ge=1)
    """How long an idle client connection stays open: above the idle timeout of the load
    balancer in front (60 s for most), so the server never closes a connection the balancer
    is about to reuse (the balancer would answer that request 502)."""
    http_docs_enabled: bool = True
    """Serve the API documentation (``/docs``, ``/redoc``, ``/openapi.json``); off: 404."""
    http_metrics_enabled: bool = True
    """Serve ``/metrics`` (off: 404; the metrics are still counted)."""
    log_level: str = "INFO"
    log_json: bool = True
    tracing_enabled: bool = False
    """Record OpenTelemetry spans and carry the trace context in the events
    (:mod:`platform_runtime.tracing`); off: no span is recorded."""
    tracing_otlp_endpoint: str | None = None
    """Where to send the spans, OTLP over HTTP (e.g. ``http://collector:4318/v1/traces``)."""
    tracing_file: str | None = None
    """Also append the spans to this file as JSON lines (a development machine, tests)."""

    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_notify_interval_s: float = Field(default=0.002, ge=0)
    """An API process wakes the relays with at most one ``NOTIFY`` per this interval."""
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_batch_max_records: int = Field(default=500, ge=1)
    """Most records a consumer takes in one poll (applied a partition at a time)."""
    consumer_lanes: int = Field(default=4, ge=1)
    """Partitions of one poll a consumer applies at once (a database connection each)."""
    consumer_backoff_initial_s: float = Field(default=0.2, gt=0)
    consumer_backoff_max_s: float = Field(default=5.0, gt=0)
    metrics_lag_interval_s: float = Field(default=15.0, gt=0)
    inbox_retention_days: int = Field(default=30, ge=1)
    """How long a consumer group remembers an event it applied (its inbox row): longer than
    an event can come again from its topic, a replay of its dead letter included (28 days
    with the broker's default ``retention.ms`` and ``segment.ms``, see
    :mod:`platform_runtime.inbox`). Raise it with the topics' retention."""
    inbox_purge_interval_s: float = Field(default=600.0, gt=0)
    """How often a worker process purges the inbox rows older than the retention."""
    inbox_purge_batch_size: int = Field(default=1000, ge=1)
    """Inbox rows deleted per transaction (short transactions hold no lock for long)."""

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("jwt_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        """``<PREFIX>JWT_SECRET=`` (an unset variable passed on by docker compose) counts as
        not set, so it meets the same refusal as no secret at all."""
        return DEV_JWT_SECRET if value == "" else value

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (passed on unset by docker compose) counts as not set."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _kafka_security_fits(self) -> ServiceSettings:
        self.kafka_security()  # raises KafkaSecurityError (a ValueError) saying what to change
        return self

    def kafka_security(self) -> KafkaSecurity:
        """What every Kafka client of the service is given (see
        :mod:`platform_runtime.kafka_security`)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            ssl_ca_file=self.kafka_ssl_ca_file,
            ssl_cert_file=self.kafka_ssl_cert_file,
            ssl_key_file=self.kafka_ssl_key_file,
        )

    def check_kafka_security(self) -> None:
        """Raise :class:`InsecureSettings` for a SASL login without TLS outside development:
        the records (prices, e-mail addresses) would cross the network in the clear."""
        if self.development or self.kafka_security_protocol is not SecurityProtocol.SASL_PLAINTEXT:
            return
        prefix = str(self.model_config.get("env_prefix", ""))
        raise InsecureSettings(
            f"{self.service_name} refuses to start: {prefix}KAFKA_SECURITY_PROTOCOL="
            "SASL_PLAINTEXT sends every record unencrypted; use SASL_SSL (with "
            f"{prefix}KAFKA_SSL_CA_FILE), or {prefix}DEVELOPMENT=true on a development machine"
        )

    @property
    def uses_dev_jwt_secret(self) -> bool:
        """Tokens signed with :data:`DEV_JWT_SECRET` verify here (an HS* algorithm with it)."""
        return (
            self.jwt_algorithm.startswith("HS")
            and self.jwt_secret is not None
            and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        )

    def check_serving(self) -> None:
        """Raise :class:`InsecureSettings` if this process would serve the API with the public
        development secret while ``development`` is off. A ``worker`` serves no
        authenticated route, so it needs no secret."""
        if self.role is Role.WORKER or self.development or not self.uses_dev_jwt_secret:
            return
        prefix = str(self.model_config.get("env_prefix", ""))
        raise InsecureSettings(
            f"{self.service_name} refuses to start: its API would accept tokens signed with "
            f"the public development JWT secret, so set {prefix}JWT_SECRET to a secret of "
            f"your own (at least 32 random bytes), or {prefix}DEVELOPMENT=true on a "
            "development machine"
        )
