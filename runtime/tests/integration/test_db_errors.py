"""What PostgreSQL says about a refused write reaches the code that translates it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from platform_runtime.db import reported_detail, violated_constraint

from .conftest import Db

REFUSE = """
DO $$
BEGIN
    RAISE EXCEPTION 'no more widgets'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'widgets_within_quota', DETAIL = '7';
END
$$
"""


async def test_a_refusal_names_its_constraint_and_detail(db: Db) -> None:
    async with db.engine.connect() as connection:
        with pytest.raises(IntegrityError) as refused:
            await connection.execute(text(REFUSE))
        await connection.rollback()
        with pytest.raises(IntegrityError) as bare:
            await connection.execute(text("DO $$ BEGIN RAISE check_violation; END $$"))

    assert violated_constraint(refused.value) == "widgets_within_quota"
    assert reported_detail(refused.value) == "7"
    assert violated_constraint(bare.value) is None
    assert reported_detail(bare.value) is None
