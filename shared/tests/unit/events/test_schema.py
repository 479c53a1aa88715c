"""The exported JSON Schemas other teams build against."""

from __future__ import annotations

import json
from pathlib import Path

from shared.events.schema import main, schemas


def test_every_event_and_the_envelope_have_a_schema() -> None:
    exported = schemas()
    assert "Envelope.json" in exported
    assert "BookingConfirmed.v1.json" in exported
    booking = exported["BookingCreated.v1.json"]
    assert booking["x-topic"] == "booking.events"
    money = booking["$defs"]["Money"]["properties"]["amount"]
    assert money["type"] == "string"


def test_export_then_check_passes_and_a_stale_file_fails(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "Old.v1.json").write_text("{}")
    assert main([str(tmp_path), "--check"]) == 1
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "Old.v1.json").exists()
    (tmp_path / "BookingCreated.v1.json").write_text(json.dumps({"changed": True}))
    assert main([str(tmp_path), "--check"]) == 1
