"""How every Kafka client of the platform authenticates to the broker and encrypts its traffic.

One :class:`KafkaSecurity` value, made from a service's settings
(:meth:`platform_runtime.settings.ServiceSettings.kafka_security`), is given to each client the
service makes: the outbox and dead-letter producer, every consumer group, the admin client
that creates topics, the lag monitor and the FastStream broker of the readiness check.
:meth:`KafkaSecurity.client_options` is the one place that turns it into aiokafka options.

* ``PLAINTEXT`` (the default): no TLS, no authentication, for a development machine and the
  tests; anyone who reaches the broker may publish any event.
* ``SSL``: TLS, the broker's certificate verified against ``ssl_ca_file`` (or the system's
  certificate authorities); with ``ssl_cert_file`` and ``ssl_key_file`` the client also
  proves who it is with a certificate (mutual TLS).
* ``SASL_SSL``: the same TLS, and a SCRAM login (``SCRAM-SHA-512`` by default) with a
  username and password: what production uses.
* ``SASL_PLAINTEXT``: a SCRAM login without TLS. Records (prices, e-mail addresses) travel
  in the clear, so the settings refuse it outside development.

The password is a :class:`~pydantic.SecretStr` and never appears in a ``repr`` or a log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from platform_runtime.errors import KernelError

if TYPE_CHECKING:
    import ssl

    from faststream.security import BaseSecurity


class SecurityProtocol(enum.StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(enum.StrEnum):
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    SCRAM_SHA_256 = "SCRAM-SHA-256"


class KafkaSecurityError(KernelError, ValueError):
    """Security settings that do not fit together; the message says what to change."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Transport security and authentication of one Kafka client (see the module text)."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_file: str | None = None
    """Certificate authorities that sign the broker's certificate (PEM); None: the system's."""
    ssl_cert_file: str | None = None
    """The client's own certificate (PEM), for brokers that ask for one (mutual TLS)."""
    ssl_key_file: str | None = None
    """The private key of ``ssl_cert_file`` (PEM, unencrypted)."""

    def __post_init__(self) -> None:
        protocol = SecurityProtocol(self.protocol)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "sasl_mechanism", SaslMechanism(self.sasl_mechanism))
        if protocol.uses_sasl:
            if not self.username or self.password is None or not self.password.get_secret_value():
                raise KafkaSecurityError(
                    f"Kafka security protocol {protocol} needs a SASL username and password"
                )
        elif self.username or self.password is not None:
            raise KafkaSecurityError(
                f"a Kafka SASL username or password is set, but security protocol {protocol} "
                "does not log in: use SASL_SSL"
            )
        if not protocol.uses_tls and (self.ssl_ca_file or self.ssl_cert_file or self.ssl_key_file):
            raise KafkaSecurityError(
                f"Kafka TLS files are set, but security protocol {protocol} does not use TLS: "
                "use SSL or SASL_SSL"
            )
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise KafkaSecurityError(
                "a Kafka client certificate needs both its certificate and its key file"
            )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client. Each call
        makes a new TLS context, so a client made after a certificate rotation reads the
        new files."""
        if self.protocol is SecurityProtocol.PLAINTEXT:
            return {}
        options: dict[str, Any] = {"security_protocol": str(self.protocol)}
        if self.protocol.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.protocol.uses_sasl:
            options |= {
                "sasl_mechanism": str(self.sasl_mechanism),
                "sasl_plain_username": self.username,
                "sasl_plain_password": self._password(),
            }
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the broker's certificate and host name."""
        from aiokafka.helpers import create_ssl_context  # settings import this module

        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_ca_file or None,
            certfile=self.ssl_cert_file or None,
            keyfile=self.ssl_key_file or None,
        )
        return context

    def faststream(self) -> BaseSecurity | None:
        """The same security for a FastStream ``KafkaBroker`` (its ``security=``)."""
        from faststream.security import BaseSecurity, SASLScram256, SASLScram512

        if self.protocol is SecurityProtocol.PLAINTEXT:
            return None
        context = self.ssl_context() if self.protocol.uses_tls else None
        if not self.protocol.uses_sasl:
            return BaseSecurity(ssl_context=context, use_ssl=True)
        scram = SASLScram512 if self.sasl_mechanism is SaslMechanism.SCRAM_SHA_512 else SASLScram256
        return scram(
            username=str(self.username),
            password=self._password(),
            ssl_context=context,
            use_ssl=self.protocol.uses_tls,
        )

    def _password(self) -> str:
        return self.password.get_secret_value() if self.password is not None else ""

    def describe(self) -> str:
        """For the log: the protocol and who logs in, never the password."""
        if self.protocol.uses_sasl:
            return f"{self.protocol} ({self.sasl_mechanism} as {self.username})"
        return str(self.protocol)


PLAINTEXT = KafkaSecurity()
"""No TLS, no login: the default of every client."""
