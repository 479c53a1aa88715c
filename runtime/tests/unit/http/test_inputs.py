"""Request bodies: what no service can store is refused when the request is validated."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import Field, TypeAdapter, ValidationError

from platform_runtime.http.inputs import (
    MAX_FREE_FORM_BYTES,
    MAX_FREE_FORM_DEPTH,
    FreeFormObject,
    RequestModel,
    depth,
    unstorable,
)
from platform_runtime.http.problems import install_problem_handlers


class Contact(RequestModel):
    email: str


class Order(RequestModel):
    notes: str = ""
    tags: list[str] = Field(default_factory=list)
    contact: Contact | None = None
    attributes: FreeFormObject = Field(default_factory=dict)


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep: ``{"a": {"a": ... {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _refusal(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate(data)
    [error] = caught.value.errors()
    return dict(error)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"notes": "a\x00b"}, "notes contains"),
        ({"tags": ["ok", "b\x00d"]}, "tags[1] contains"),
        ({"contact": {"email": "\x00@example.org"}}, "contact.email contains"),
        ({"attributes": {"deep": [{"x": "\x00"}]}}, "attributes.deep[0].x contains"),
        ({"attributes": {"k\x00": 1}}, "a member name in attributes contains"),
        ({"attr\x00": 1}, "a member name in the value contains"),
    ],
)
def test_a_nul_character_anywhere_in_a_body_is_refused_saying_where(
    data: dict[str, Any], where: str
) -> None:
    error = _refusal(data)

    assert error["type"] == "nul_character"
    assert error["msg"] == f"{where} the NUL character (U+0000)"


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused(number: float) -> None:
    error = _refusal({"attributes": {"score": [1.5, number]}})

    assert error["type"] == "finite_number"
    assert error["msg"].startswith("attributes.score[1] is ")
    assert error["msg"].endswith("numbers must be finite")


def test_unknown_members_are_refused() -> None:
    assert _refusal({"notes": "x", "extra": 1})["type"] == "extra_forbidden"


def test_a_clean_body_is_taken_as_it_is() -> None:
    attributes = {"floor": 3, "ratio": 0.5, "tags": ["quiet", None, True], "nested": nested(6)}

    order = Order.model_validate({"notes": "line\nbreak", "attributes": attributes})

    assert order.attributes == attributes
    assert order.notes == "line\nbreak"


def test_free_form_objects_may_be_as_deep_as_the_bound() -> None:
    assert Order(attributes=nested(MAX_FREE_FORM_DEPTH)).attributes == nested(MAX_FREE_FORM_DEPTH)
    assert Order(attributes={"a": [[[[[[[1]]]]]]]}).attributes == {"a": [[[[[[[1]]]]]]]}


@pytest.mark.parametrize(
    "attributes",
    [nested(MAX_FREE_FORM_DEPTH + 1), {"a": [[[[[[[[1]]]]]]]]}, nested(300), nested(5000)],
)
def test_free_form_objects_deeper_than_the_bound_are_refused(attributes: dict[str, Any]) -> None:
    error = _refusal({"attributes": attributes})

    assert error["loc"] == ("attributes",)
    assert error["msg"] == (
        f"Value error, nests objects and arrays more than {MAX_FREE_FORM_DEPTH} levels deep"
    )


def test_free_form_objects_longer_than_the_bound_are_refused() -> None:
    fits = {"text": "x" * (MAX_FREE_FORM_BYTES - len('{"text":""}'))}
    too_long = {"text": "x" * (MAX_FREE_FORM_BYTES - len('{"text":""}') + 1)}

    assert Order(attributes=fits).attributes == fits
    error = _refusal({"attributes": too_long})
    assert error["msg"] == (
        f"Value error, is {MAX_FREE_FORM_BYTES + 1} bytes long as JSON; "
        f"at most {MAX_FREE_FORM_BYTES} are accepted"
    )


def test_the_length_of_a_free_form_object_counts_utf8_bytes() -> None:
    characters = (MAX_FREE_FORM_BYTES - len('{"text":""}')) // 2 + 1  # two bytes each

    assert _refusal({"attributes": {"text": "é" * characters}})["loc"] == ("attributes",)


def test_a_free_form_object_outside_a_request_model_is_checked_too() -> None:
    adapter = TypeAdapter(FreeFormObject)

    with pytest.raises(ValidationError, match="NUL"):
        adapter.validate_python({"a": "\x00"})
    with pytest.raises(ValidationError, match="finite"):
        adapter.validate_python({"a": float("nan")})
    assert adapter.validate_python({"a": 1}) == {"a": 1}


def test_depth_counts_objects_and_arrays_and_stops_beyond_the_bound() -> None:
    assert depth(1, beyond=10) == 0
    assert depth({}, beyond=10) == 1
    assert depth({"a": [1, {"b": []}]}, beyond=10) == 4
    assert depth(nested(10_000), beyond=9) == 9


def test_unstorable_walks_any_parsed_json_value() -> None:
    assert unstorable("plain") is None
    assert unstorable([1, 2.5, None, {"a": "b"}]) is None
    assert unstorable("\x00") == ("nul_character", "the value contains the NUL character (U+0000)")
    assert unstorable(nested(10_000)) is None


def test_the_schema_of_a_free_form_object_states_its_bounds() -> None:
    schema = Order.model_json_schema()["properties"]["attributes"]

    assert schema["type"] == "object"
    assert f"at most {MAX_FREE_FORM_DEPTH} levels deep" in schema["description"]
    assert f"{MAX_FREE_FORM_BYTES} bytes long" in schema["description"]


async def test_over_http_an_unstorable_body_is_a_422_problem_and_the_route_never_runs(
    client: Any,
) -> None:
    app = FastAPI()
    install_problem_handlers(app)
    ran: list[Order] = []

    @app.post("/orders")
    async def place(order: Order) -> dict[str, str]:
        ran.append(order)
        return {"notes": order.notes}

    async with client(app) as http:
        nul = await http.post("/orders", json={"notes": "a\x00b"})
        nan = await http.post(
            "/orders",
            content='{"attributes": {"x": NaN}}',
            headers={"Content-Type": "application/json"},
        )
        deep = await http.post(
            "/orders",
            content=json.dumps({"attributes": nested(300)}),
            headers={"Content-Type": "application/json"},
        )

    assert [r.status_code for r in (nul, nan, deep)] == [422, 422, 422]
    assert nul.json()["errors"] == [
        {
            "loc": ["body"],
            "msg": "notes contains the NUL character (U+0000)",
            "type": "nul_character",
        }
    ]
    assert nan.json()["errors"][0]["type"] == "finite_number"
    assert deep.json()["errors"][0]["loc"] == ["body", "attributes"]
    assert ran == []
