"""``python -m platform_tooling.event_schemas DIR``: the contract's schemas written, checked."""

from __future__ import annotations

import json
from pathlib import Path

from platform_tooling.event_schemas import main


def test_export_then_check_passes_and_a_stale_file_fails(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "Old.v1.json").write_text("{}")
    assert main([str(tmp_path), "--check"]) == 1
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "Old.v1.json").exists()
    (tmp_path / "BookingCreated.v1.json").write_text(json.dumps({"changed": True}))
    assert main([str(tmp_path), "--check"]) == 1
