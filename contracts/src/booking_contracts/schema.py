"""JSON Schema of every event payload and of the envelope, exported for other teams.

:func:`schemas` gives one ``<Type>.v<N>.json`` per payload model and ``Envelope.json``
(``python -m platform_tooling.event_schemas DIR`` writes them, ``--check`` compares).

Each file declares its dialect (``$schema``: JSON Schema 2020-12) and its identity (``$id``:
:data:`SCHEMA_ID_BASE` and the file's name without ``.json``, e.g.
``urn:booking-platform:event:BookingConfirmed.v1``): it names the event type and its version,
so it stays the same for as long as the schema is compatible, and a consumer can register the
files by it. The schema, every model it refers to (``$defs``) and every property have a
``description``.
"""

from __future__ import annotations

import json
from typing import Any

from booking_contracts import catalogue  # noqa: F401  (registers every payload model)
from booking_contracts.envelope import Envelope, EventCatalogue

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect every exported schema declares (Pydantic writes 2020-12)."""
SCHEMA_ID_BASE = "urn:booking-platform:event:"
"""The ``$id`` of an exported schema is this and its file name without ``.json``."""


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for the envelope and every registered payload model."""
    result: dict[str, dict[str, Any]] = {
        "Envelope.json": _identified("Envelope", Envelope.model_json_schema())
    }
    for model in EventCatalogue.all():
        schema = _identified(model.type_name(), model.model_json_schema(mode="serialization"))
        schema["x-topic"] = model.topic
        result[f"{model.type_name()}.json"] = schema
    return result


def _identified(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, "$id": f"{SCHEMA_ID_BASE}{name}", **schema}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
