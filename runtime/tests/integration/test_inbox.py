"""The inbox remembers which events a consumer handled, one at a time or many at once."""

from __future__ import annotations

import uuid

from platform_runtime.inbox import claim, claim_many

from .conftest import Db, inbox


async def test_claiming_many_returns_only_the_events_not_handled_before(db: Db) -> None:
    seen, new = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    async with db.sessions() as session, session.begin():
        assert await claim(session, inbox, consumer="c", event_id=seen, event_type="A.v1")

    async with db.sessions() as session, session.begin():
        fresh = await claim_many(
            session, inbox, consumer="c", events=dict.fromkeys([seen, *new], "A.v1")
        )
        again = await claim_many(session, inbox, consumer="c", events={new[0]: "A.v1"})
        other = await claim_many(session, inbox, consumer="other", events={seen: "A.v1"})
        nothing = await claim_many(session, inbox, consumer="c", events={})

    assert fresh == set(new)
    assert again == set()
    assert other == {seen}
    assert nothing == set()
