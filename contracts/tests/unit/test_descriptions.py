"""Contracts a consumer can read: every exported event schema says which dialect it is written
in and what it is called, describes itself, every model it refers to and every property."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from booking_contracts.schema import SCHEMA_DIALECT, SCHEMA_ID_BASE, schemas

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"
EXPORTED = sorted(path.name for path in DOCS.glob("*.json"))
"""The schemas the platform publishes (other tests register events of their own, which
``schemas()`` would list too)."""

_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def undescribed(schema: dict[str, Any]) -> list[str]:
    """JSON pointers of what lacks a description in ``schema``: the schema itself, each model
    under ``$defs``, and each property of any object, however deeply nested."""
    missing = [] if _described(schema) else ["#"]
    missing += _undescribed_within(schema, "#")
    for name, definition in schema.get("$defs", {}).items():
        pointer = f"#/$defs/{name}"
        if not _described(definition):
            missing.append(pointer)
        missing += _undescribed_within(definition, pointer)
    return missing


def _described(schema: dict[str, Any]) -> bool:
    description = schema.get("description")
    return isinstance(description, str) and bool(description.strip())


def _undescribed_within(schema: Any, pointer: str) -> Iterator[str]:
    if not isinstance(schema, dict):
        return
    for name, prop in schema.get("properties", {}).items():
        at = f"{pointer}/properties/{name}"
        if not _described(prop):
            yield at
        yield from _undescribed_within(prop, at)
    for key in _SUBSCHEMAS:
        yield from _undescribed_within(schema.get(key), f"{pointer}/{key}")
    for key in _SUBSCHEMA_LISTS:
        for index, item in enumerate(schema.get(key, [])):
            yield from _undescribed_within(item, f"{pointer}/{key}/{index}")


def test_undescribed_finds_the_schema_a_definition_and_a_nested_property() -> None:
    schema = {
        "type": "object",
        "properties": {
            "described": {"type": "string", "description": "Yes."},
            "bare": {"type": "string"},
            "many": {
                "description": "A list.",
                "type": "array",
                "items": {"type": "object", "properties": {"inner": {"type": "integer"}}},
            },
        },
        "$defs": {
            "Thing": {
                "description": "  ",
                "anyOf": [{"type": "object", "properties": {"deep": {"type": "string"}}}],
            }
        },
    }

    assert undescribed(schema) == [
        "#",
        "#/properties/bare",
        "#/properties/many/items/properties/inner",
        "#/$defs/Thing",
        "#/$defs/Thing/anyOf/0/properties/deep",
    ]


def test_the_event_schemas_include_the_envelope_and_every_event() -> None:
    assert "Envelope.json" in EXPORTED
    assert "BookingConfirmed.v1.json" in EXPORTED
    assert len(EXPORTED) > 10
    assert set(EXPORTED) <= set(schemas())


@pytest.mark.parametrize("file_name", EXPORTED)
def test_every_event_schema_declares_its_dialect_and_a_stable_id(file_name: str) -> None:
    schema = schemas()[file_name]

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" == SCHEMA_DIALECT
    assert schema["$id"] == SCHEMA_ID_BASE + file_name.removesuffix(".json")


def test_the_ids_of_the_event_schemas_are_distinct_and_absolute() -> None:
    ids = [schema["$id"] for schema in schemas().values()]

    assert len(set(ids)) == len(ids)
    assert all(":" in schema_id and " " not in schema_id for schema_id in ids)
    assert "urn:booking-platform:event:BookingConfirmed.v1" in ids


@pytest.mark.parametrize("file_name", EXPORTED)
def test_every_event_schema_its_models_and_their_properties_are_described(
    file_name: str,
) -> None:
    assert undescribed(schemas()[file_name]) == []
