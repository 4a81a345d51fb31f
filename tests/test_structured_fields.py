"""RFC 9651 structured fields (tusd_py/structured_fields.py): the parser the IETF draft's fields
go through. Cases from RFC 9651's examples and its parsing algorithm's failure rules."""

from __future__ import annotations

import pytest

from tusd_py import structured_fields as sf


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-42", -42),
        ("0", 0),
        ("999999999999999", 999_999_999_999_999),
        ("4.5", 4.5),
        ('"hello \\"world\\""', 'hello "world"'),
        ("foo123/456", "foo123/456"),
        (":cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg==:", b"pretend this is binary content."),
        ("?1", True),
        ("?0", False),
        ("@1659578233", 1659578233),
        ('%"This is intended for display to %c3%bcsers."', "This is intended for display to \u00fcsers."),
        ("  7  ", 7),
    ],
)
def test_items(text: str, value: object) -> None:
    parsed, parameters = sf.parse_item(text)
    assert parsed == value
    assert isinstance(parsed, bool) == isinstance(value, bool)
    assert parameters == {}


def test_item_types() -> None:
    assert type(sf.parse_item("foo")[0]) is sf.Token
    assert type(sf.parse_item('"foo"')[0]) is str
    assert type(sf.parse_item("@1")[0]) is sf.Date
    assert type(sf.parse_item('%"x"')[0]) is sf.DisplayString


def test_item_parameters_and_integer_is_not_boolean() -> None:
    value, parameters = sf.parse_item("5; foo=bar; baz")
    assert value == 5 and parameters == {"foo": "bar", "baz": True}
    assert sf.is_integer(5) and not sf.is_integer(True) and not sf.is_integer(5.0)


@pytest.mark.parametrize(
    "text",
    ["", "abc def", "1000000000000000", "1.2345", "12345678901234.5", "?2", "?", '"unterminated', ":abc", "1,2", "-",
     "4.", "a\u00e9", '"\\x"', "@1.5", '%"%C3"', "5;", "5;Foo"],
)  # fmt: skip
def test_invalid_items(text: str) -> None:
    with pytest.raises(sf.StructuredFieldError):
        sf.parse_item(text)


def test_dictionary() -> None:
    members = sf.parse_dictionary('en="Applepie", da=:w4ZibGV0w6ZydGU=:, flag, n=(1 2);q=9, x=1;y=2')
    assert members["en"] == ("Applepie", {})
    assert members["da"] == ("Æbletærte".encode(), {})
    assert members["flag"] == (True, {})
    assert members["n"] == ([(1, {}), (2, {})], {"q": 9})
    assert members["x"] == (1, {"y": 2})
    # Several field lines are one field; a repeated key keeps the last value.
    assert sf.parse_dictionary(["a=1", "b=2, a=3"]) == {"b": (2, {}), "a": (3, {})}


@pytest.mark.parametrize("text", ["a=1,", "a=1 b=2", "A=1", "a=", "a=(1 2", "1=a"])
def test_invalid_dictionaries(text: str) -> None:
    with pytest.raises(sf.StructuredFieldError):
        sf.parse_dictionary(text)


def test_list() -> None:
    assert sf.parse_list("sugar, tea, rum") == [("sugar", {}), ("tea", {}), ("rum", {})]
    with pytest.raises(sf.StructuredFieldError):
        sf.parse_list("a,")


def test_serialize_dictionary() -> None:
    assert sf.serialize_dictionary({"min-size": 0, "max-size": 1000, "max-age": 3600}) == (
        "min-size=0, max-size=1000, max-age=3600"
    )
    assert sf.serialize_dictionary({"a": True, "b": False, "c": b"\x00", "d": 'x"y'}) == 'a, b=?0, c=:AA==:, d="x\\"y"'
    round_trip = sf.parse_dictionary(sf.serialize_dictionary({"min-size": 0, "max-size": 5}))
    assert round_trip == {"min-size": (0, {}), "max-size": (5, {})}
    with pytest.raises(sf.StructuredFieldError):
        sf.serialize_dictionary({"Bad": 1})
    with pytest.raises(sf.StructuredFieldError):
        sf.serialize_dictionary({"big": 10**15})
