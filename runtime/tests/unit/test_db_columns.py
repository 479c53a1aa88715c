"""Column and constraint helpers every service's tables use."""

from __future__ import annotations

from sqlalchemy import DateTime

from platform_runtime.db import one_of, timestamp_column


def test_one_of_is_an_in_list_condition() -> None:
    assert one_of("status", ("open", "blocked")) == "status IN ('open', 'blocked')"


def test_a_required_timestamp_defaults_to_now_and_an_optional_one_to_nothing() -> None:
    required, optional = timestamp_column("created_at"), timestamp_column("gone_at", nullable=True)

    assert isinstance(required.type, DateTime)
    assert required.type.timezone is True
    assert required.nullable is False
    assert required.server_default is not None
    assert optional.nullable is True
    assert optional.server_default is None
