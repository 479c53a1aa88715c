"""``EmailAddress`` (cached) accepts, normalises and refuses exactly as pydantic's ``EmailStr``."""

from __future__ import annotations

import pytest
from pydantic import EmailStr, TypeAdapter, ValidationError

from booking_contracts.bounds import EmailAddress
from booking_contracts.catalogue import Contact

OURS = TypeAdapter(EmailAddress)
THEIRS = TypeAdapter(EmailStr)


@pytest.mark.parametrize(
    "text",
    [
        "alice@example.com",
        "Alice.Smith+tag@Example.COM",
        "jörg@bücher.example",
        "o'brien@example.org",
    ],
)
def test_an_address_is_accepted_and_normalised_as_by_email_str(text: str) -> None:
    assert OURS.validate_python(text) == THEIRS.validate_python(text)
    assert OURS.validate_python(text) == THEIRS.validate_python(text)  # again, from the cache


@pytest.mark.parametrize(
    "text", ["", "alice", "alice@", "@example.com", "a b@example.com", "alice@localhost", "x" * 300]
)
def test_a_non_address_is_refused_with_email_strs_error_every_time(text: str) -> None:
    for _ in range(2):  # a refusal is not cached as an acceptance
        with pytest.raises(ValidationError) as ours:
            OURS.validate_python(text)
        with pytest.raises(ValidationError) as theirs:
            THEIRS.validate_python(text)
        assert [(e["type"], e["msg"]) for e in ours.value.errors()] == [
            (e["type"], e["msg"]) for e in theirs.value.errors()
        ]


def test_the_schema_is_email_strs() -> None:
    assert OURS.json_schema() == THEIRS.json_schema()
    assert Contact.model_json_schema()["properties"]["email"]["format"] == "email"


def test_a_contact_keeps_the_normalised_address() -> None:
    assert Contact(email="Bob@Example.COM").email == "Bob@example.com"
