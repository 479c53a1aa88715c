"""AsyncAPI 3.0 documents of the services, generated from what their runtimes declare.

A service's document lists

* the events it **sends**: every catalogue event whose topic is one of the runtime's
  ``produces`` topics (one ``send.<topic>`` operation per topic);
* the events it **receives**: per consumer group, the event types it has handlers for
  (one ``receive.<group>.<topic>`` operation per group and topic, with the group id);
* the dead-letter topics its consumers write records to that they cannot apply.

Every event message is a CloudEvents 1.0 envelope in structured mode whose ``data`` is the
event model's JSON Schema (the same schemas as ``docs/events``), keyed by the aggregate id,
with the ``ce_*`` headers the outbox relay adds.

FastStream's own generator is not used: it documents a subscriber by its handler's
signature (ours take the raw Kafka record, so every payload would be empty) and knows
nothing of the topics a service publishes to through its outbox.

``python -m platform_tooling.asyncapi DIR SERVICE...`` writes them to ``docs/asyncapi``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from booking_contracts import catalogue  # noqa: F401  (registers every payload model)
from booking_contracts.envelope import Envelope, Event, EventCatalogue
from booking_contracts.topics import dead_letter_topic
from platform_runtime.http.context import runtime_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from platform_runtime.messaging import EventConsumer
    from platform_runtime.service import ServiceRuntime

ASYNCAPI_VERSION = "3.1.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTER = "DeadLetter"

_CE_HEADERS: dict[str, dict[str, Any]] = {
    "ce_id": {"type": "string", "format": "uuid", "description": "The envelope's `id`."},
    "ce_source": {"type": "string", "description": "The envelope's `source`."},
    "ce_correlationid": {
        "type": "string",
        "description": "The envelope's `correlationid`, when it has one.",
    },
}

_DEAD_LETTER_HEADERS: dict[str, str] = {
    "dlq_reason": "Why the record could not be applied.",
    "dlq_kind": "`undecodable`, `rejected` (a permanent error) or `retries_exhausted`.",
    "dlq_consumer": "The consumer group that gave up on the record.",
    "dlq_original_topic": "The topic the record was read from.",
    "dlq_original_partition": "Its partition there.",
    "dlq_original_offset": "Its offset there.",
    "dlq_failed_at": "When the consumer gave up (ISO 8601, UTC).",
}


def handled_events(consumer: EventConsumer) -> list[type[Event]]:
    """The event types ``consumer`` has handlers for, ordered by CloudEvents type."""
    return sorted(consumer._handlers, key=lambda model: model.type_name())


def build(
    runtime: ServiceRuntime, *, title: str, version: str, description: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI document of the service ``runtime`` belongs to."""
    produced = {
        topic: [m for m in EventCatalogue.all() if m.topic == topic]
        for topic in sorted(set(runtime.produces))
    }
    received = [
        (consumer.name, topic, [m for m in handled_events(consumer) if m.topic == topic])
        for consumer in sorted(runtime.consumers, key=lambda c: c.name)
        for topic in consumer.topics
    ]
    dead_letter_topics = sorted({dead_letter_topic(topic) for _, topic, _ in received})

    by_topic: dict[str, dict[str, type[Event]]] = {}
    for topic, models in [*produced.items(), *((t, ms) for _, t, ms in received)]:
        by_topic.setdefault(topic, {}).update((m.type_name(), m) for m in models)
    models = sorted(
        {m for messages in by_topic.values() for m in messages.values()},
        key=lambda m: m.type_name(),
    )

    channels: dict[str, Any] = {
        topic: _channel(topic, sorted(messages)) for topic, messages in sorted(by_topic.items())
    }
    operations: dict[str, Any] = {}
    for topic, models_out in produced.items():
        operations[f"send.{topic}"] = {
            "action": "send",
            "channel": _ref("channels", topic),
            "summary": f"Publishes to {topic} through the transactional outbox.",
            "messages": [_message_ref(topic, m.type_name()) for m in models_out],
        }
    for group, topic, models_in in received:
        operations[f"receive.{group}.{topic}"] = {
            "action": "receive",
            "channel": _ref("channels", topic),
            "summary": f"Consumer group {group} applies each event once (other types skipped).",
            "messages": [_message_ref(topic, m.type_name()) for m in models_in],
            "bindings": {
                "kafka": {
                    "groupId": {"type": "string", "enum": [group]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
    for topic in dead_letter_topics:
        channels[topic] = _channel(topic, [DEAD_LETTER])
        channels[topic]["description"] = "Records of the source topic a consumer gave up on."
        operations[f"send.{topic}"] = {
            "action": "send",
            "channel": _ref("channels", topic),
            "summary": "Dead-letters a record a consumer of this service cannot apply.",
            "messages": [_message_ref(topic, DEAD_LETTER)],
        }

    messages: dict[str, Any] = {m.type_name(): _message(m) for m in models}
    if dead_letter_topics:
        messages[DEAD_LETTER] = _dead_letter_message()
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas(models)},
    }


def document_of(app: FastAPI) -> dict[str, Any]:
    """The AsyncAPI document of a service app made by ``ServiceRuntime.create_app``."""
    runtime = runtime_of(app)
    return build(runtime, title=app.title, version=app.version, description=app.description)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _message_ref(topic: str, message: str) -> dict[str, str]:
    return _ref("channels", topic, "messages", message)


def _channel(topic: str, messages: Iterable[str]) -> dict[str, Any]:
    return {
        "address": topic,
        "messages": {name: _ref("components", "messages", name) for name in messages},
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _message(model: type[Event]) -> dict[str, Any]:
    type_name = model.type_name()
    message: dict[str, Any] = {
        "name": type_name,
        "title": f"{model.name} (version {model.version})",
        "payload": _ref("components", "schemas", type_name),
        "headers": {
            "type": "object",
            "properties": {
                **_CE_HEADERS,
                "ce_type": {
                    "type": "string",
                    "const": type_name,
                    "description": "The envelope's `type`.",
                },
            },
            "required": ["ce_id", "ce_source", "ce_type"],
        },
        "correlationId": {"location": "$message.payload#/correlationid"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The aggregate id (the envelope's `subject`): "
                    "one aggregate's events stay in order.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    doc = model.__dict__.get("__doc__")
    if doc:
        message["summary"] = " ".join(doc.split())
    return message


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record copied unchanged (key, value, headers) with the reason added.",
        "payload": {"description": "The original record value, byte for byte."},
        "headers": {
            "type": "object",
            "properties": {
                name: {"type": "string", "description": text}
                for name, text in _DEAD_LETTER_HEADERS.items()
            },
            "required": sorted(_DEAD_LETTER_HEADERS),
            "additionalProperties": {"type": "string"},
        },
    }


def _schemas(models: list[type[Event]]) -> dict[str, Any]:
    """Each event's envelope (keyed by CloudEvents type) and every model it refers to."""
    if not models:
        return {}
    refs, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(definitions["$defs"])
    for model in models:
        envelope = Envelope.model_json_schema(mode="serialization")
        envelope["title"] = f"{model.type_name()} envelope"
        envelope["description"] = f"CloudEvents 1.0 envelope of a {model.name} event."
        envelope["properties"]["type"] = {
            "const": model.type_name(),
            "description": f"Always `{model.type_name()}`: `data` is a {model.name} event "
            f"of version {model.version}.",
            "title": "Type",
            "type": "string",
        }
        envelope["properties"]["data"] = refs[(model, "serialization")]
        schemas[model.type_name()] = envelope
    return schemas
