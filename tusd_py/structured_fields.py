"""HTTP Structured Field Values (RFC 9651, which obsoletes RFC 8941): parsing and serialising.

The IETF resumable-upload draft defines its fields as structured fields
(`Upload-Offset`, `Upload-Length`: Integer Items; `Upload-Complete`: a Boolean
Item; `Upload-Limit`: a Dictionary), and so do RFC 9530's `Repr-Digest`,
`Content-Digest` and `Want-Repr-Digest` (Dictionaries). This module follows
the parsing algorithms of RFC 9651 section 4.2 step by step, strictly: any
deviation raises `StructuredFieldError`, and the caller decides what an
unparseable field means (the draft: "Other values MUST cause the entire
header field to be ignored").

Values: Integer -> int, Decimal -> float, String -> str, Token -> Token (a str
subclass), Byte Sequence -> bytes, Boolean -> bool, Date -> Date, Display
String -> DisplayString. An Item is `(value, parameters)`; an Inner List is
`(list of Items, parameters)`.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Iterable, Mapping


class StructuredFieldError(ValueError):
    """The field value is not a valid structured field of the expected type."""


class Token(str):
    """An sf-token (distinct from an sf-string)."""


class Date(int):
    """An sf-date: seconds since the epoch."""


class DisplayString(str):
    """An sf-displaystring (Unicode, percent-encoded on the wire)."""


BareItem = int | float | str | bytes | bool
Parameters = dict[str, BareItem]
Item = tuple[BareItem, Parameters]
InnerList = tuple[list[Item], Parameters]
Member = Item | InnerList

_LCALPHA = set(string.ascii_lowercase)
_DIGITS = set(string.digits)
_ALPHA = set(string.ascii_letters)
_KEY_CHARS = _LCALPHA | _DIGITS | set("_-.*")
_TCHAR = _ALPHA | _DIGITS | set("!#$%&'*+-.^_`|~")
_TOKEN_CHARS = _TCHAR | set(":/")
_BASE64_CHARS = _ALPHA | _DIGITS | set("+/=")
_MAX_INTEGER = 999_999_999_999_999


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # --- cursor ----------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise StructuredFieldError("unexpected end of field value")
        self.pos += 1
        return char

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def expect_end(self) -> None:
        self.skip_sp()
        if not self.at_end():
            raise StructuredFieldError(f"unexpected {self.peek()!r} at position {self.pos}")

    # --- RFC 9651 section 4.2 ------------------------------------------------------------

    def parse_list(self) -> list[Member]:
        members: list[Member] = []
        while not self.at_end():
            members.append(self.parse_item_or_inner_list())
            self.skip_ows()
            if self.at_end():
                return members
            if self.take() != ",":
                raise StructuredFieldError("list members must be separated by ','")
            self.skip_ows()
            if self.at_end():
                raise StructuredFieldError("trailing ',' in list")
        return members

    def parse_dictionary(self) -> dict[str, Member]:
        members: dict[str, Member] = {}
        while not self.at_end():
            key = self.parse_key()
            member: Member
            if self.peek() == "=":
                self.pos += 1
                member = self.parse_item_or_inner_list()
            else:
                member = (True, self.parse_parameters())
            members.pop(key, None)  # a duplicate key overwrites, in the position of the last one
            members[key] = member
            self.skip_ows()
            if self.at_end():
                return members
            if self.take() != ",":
                raise StructuredFieldError("dictionary members must be separated by ','")
            self.skip_ows()
            if self.at_end():
                raise StructuredFieldError("trailing ',' in dictionary")
        return members

    def parse_item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            return self.parse_inner_list()
        return self.parse_item()

    def parse_inner_list(self) -> InnerList:
        self.pos += 1  # "("
        items: list[Item] = []
        while not self.at_end():
            self.skip_sp()
            if self.peek() == ")":
                self.pos += 1
                return items, self.parse_parameters()
            items.append(self.parse_item())
            if self.peek() not in (" ", ")"):
                raise StructuredFieldError("inner list members must be separated by a space")
        raise StructuredFieldError("inner list is not closed")

    def parse_item(self) -> Item:
        value = self.parse_bare_item()
        return value, self.parse_parameters()

    def parse_bare_item(self) -> BareItem:
        char = self.peek()
        if char == "-" or char in _DIGITS:
            return self.parse_number()
        if char == '"':
            return self.parse_string()
        if char == "*" or char in _ALPHA:
            return self.parse_token()
        if char == ":":
            return self.parse_byte_sequence()
        if char == "?":
            return self.parse_boolean()
        if char == "@":
            return self.parse_date()
        if char == "%":
            return self.parse_display_string()
        raise StructuredFieldError(f"unexpected {char!r}: not the start of a bare item")

    def parse_parameters(self) -> Parameters:
        parameters: Parameters = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip_sp()
            key = self.parse_key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.parse_bare_item()
            parameters.pop(key, None)
            parameters[key] = value
        return parameters

    def parse_key(self) -> str:
        char = self.peek()
        if char not in _LCALPHA and char != "*":
            raise StructuredFieldError(f"a key cannot start with {char!r}")
        start = self.pos
        while self.peek() and self.peek() in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def parse_number(self) -> int | float:
        sign = 1
        if self.peek() == "-":
            self.pos += 1
            sign = -1
        if self.peek() not in _DIGITS:
            raise StructuredFieldError("a number must start with a digit")
        start = self.pos
        is_decimal = False
        while self.peek():
            char = self.peek()
            if char in _DIGITS:
                self.pos += 1
            elif char == "." and not is_decimal:
                if self.pos - start > 12:
                    raise StructuredFieldError("a decimal has at most 12 integer digits")
                is_decimal = True
                self.pos += 1
            else:
                break
            if not is_decimal and self.pos - start > 15:
                raise StructuredFieldError("an integer has at most 15 digits")
            if is_decimal and self.pos - start > 16:
                raise StructuredFieldError("a decimal has at most 16 characters")
        number = self.text[start : self.pos]
        if not is_decimal:
            return sign * int(number)
        if number.endswith("."):
            raise StructuredFieldError("a decimal cannot end with '.'")
        if len(number.split(".", 1)[1]) > 3:
            raise StructuredFieldError("a decimal has at most 3 fractional digits")
        return sign * float(number)

    def parse_string(self) -> str:
        self.pos += 1  # '"'
        chars = []
        while not self.at_end():
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in ('"', "\\"):
                    raise StructuredFieldError("only '\"' and '\\' may be escaped in a string")
                chars.append(escaped)
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise StructuredFieldError("strings are printable ASCII")
            else:
                chars.append(char)
        raise StructuredFieldError("string is not closed")

    def parse_token(self) -> Token:
        start = self.pos
        self.pos += 1
        while self.peek() and self.peek() in _TOKEN_CHARS:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def parse_byte_sequence(self) -> bytes:
        self.pos += 1  # ":"
        end = self.text.find(":", self.pos)
        if end < 0:
            raise StructuredFieldError("byte sequence is not closed")
        encoded = self.text[self.pos : end]
        self.pos = end + 1
        if any(char not in _BASE64_CHARS for char in encoded):
            raise StructuredFieldError("byte sequences are base64")
        try:
            # RFC 9651 lets parsers accept missing padding; we do.
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise StructuredFieldError("byte sequence is not valid base64") from None

    def parse_boolean(self) -> bool:
        self.pos += 1  # "?"
        char = self.take()
        if char == "1":
            return True
        if char == "0":
            return False
        raise StructuredFieldError("a boolean is ?0 or ?1")

    def parse_date(self) -> Date:
        self.pos += 1  # "@"
        value = self.parse_number()
        if isinstance(value, float):
            raise StructuredFieldError("a date is an integer")
        return Date(value)

    def parse_display_string(self) -> DisplayString:
        self.pos += 1  # "%"
        if self.take() != '"':
            raise StructuredFieldError('a display string starts with %"')
        raw = bytearray()
        while not self.at_end():
            char = self.take()
            if not " " <= char <= "~":
                raise StructuredFieldError("display strings are printable ASCII on the wire")
            if char == "%":
                octet = self.take() + self.take()
                if any(c not in "0123456789abcdef" for c in octet):
                    raise StructuredFieldError("display string escapes are lowercase hex")
                raw.append(int(octet, 16))
            elif char == '"':
                try:
                    return DisplayString(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise StructuredFieldError("display string is not UTF-8") from None
            else:
                raw.append(ord(char))
        raise StructuredFieldError("display string is not closed")


def _prepare(value: str | Iterable[str]) -> str:
    # Several field lines of one field are combined with ", " (RFC 9110 section 5.3).
    text = value if isinstance(value, str) else ", ".join(value)
    return text.strip(" ")


def parse_item(value: str | Iterable[str]) -> Item:
    parser = _Parser(_prepare(value))
    if parser.at_end():
        raise StructuredFieldError("an item cannot be empty")
    item = parser.parse_item()
    parser.expect_end()
    return item


def parse_list(value: str | Iterable[str]) -> list[Member]:
    parser = _Parser(_prepare(value))
    members = parser.parse_list()
    parser.expect_end()
    return members


def parse_dictionary(value: str | Iterable[str]) -> dict[str, Member]:
    parser = _Parser(_prepare(value))
    members = parser.parse_dictionary()
    parser.expect_end()
    return members


def is_integer(value: object) -> bool:
    """An sf-integer value (bool is an int in Python, but not an sf-integer)."""
    return type(value) is int


# --- serialising (RFC 9651 section 4.1), for the values we send ------------------------


def serialize_bare_item(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if not -_MAX_INTEGER <= value <= _MAX_INTEGER:
            raise StructuredFieldError("integer out of range")
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        if any(not " " <= char <= "~" for char in value):
            raise StructuredFieldError("strings are printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise StructuredFieldError(f"cannot serialise {value!r}")


def serialize_dictionary(members: Mapping[str, BareItem]) -> str:
    """A Dictionary of bare Items without parameters (`a=1, b`, with `?1` written as the bare key)."""
    parts = []
    for key, value in members.items():
        if not key or (key[0] not in _LCALPHA and key[0] != "*") or any(c not in _KEY_CHARS for c in key):
            raise StructuredFieldError(f"invalid key {key!r}")
        parts.append(key if value is True else f"{key}={serialize_bare_item(value)}")
    return ", ".join(parts)
