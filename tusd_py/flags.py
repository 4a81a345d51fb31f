"""Go-style command-line flags, as tusd takes them.

`-name value`, `-name=value`, `--name=value`; a boolean is set by `-name` alone
or `-name=true|false` (never by a separate word, as in Go). Parsing stops at
`--`; any other non-flag word is an error. Durations use Go's syntax
(`90s`, `1h30m`, `500ms`); a bare number means seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class FlagError(Exception):
    pass


class HelpRequested(FlagError):
    """`-h` or `-help` was given (Go prints the usage and exits 0)."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from a Go duration string."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d*)?", text):
        return float(text)
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


def parse_regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return text


def parse_octal(text: str) -> int:
    return int(text, 8)


@dataclass(frozen=True)
class Flag:
    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def is_bool(self) -> bool:
        return self.parse is parse_bool


def parse_flags(
    flags: Sequence[Flag], argv: Sequence[str], not_implemented: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Values by flag name for the flags that argv sets.

    `not_implemented` names flags that are refused with a reason (tusd flags
    we do not offer) rather than reported as unknown."""
    by_name = {flag.name: flag for flag in flags}
    values: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            raise FlagError(f"unexpected argument {arg!r}")
        name, has_value, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None and name in ("h", "help"):
            raise HelpRequested(name)
        if flag is None and not_implemented and name in not_implemented:
            raise FlagError(f"flag -{name} is a tusd flag that tusd-py does not implement ({not_implemented[name]})")
        if flag is None:
            raise FlagError(f"flag provided but not defined: -{name}")
        if not has_value:
            if flag.is_bool:
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise FlagError(f"flag needs an argument: -{name}")
        try:
            values[name] = flag.parse(value)
        except ValueError as exc:
            raise FlagError(f"invalid value {value!r} for flag -{name}: {exc}") from None
    if args:
        raise FlagError(f"unexpected argument {args[0]!r}")
    return values


def usage(program: str, flags: Sequence[Flag]) -> str:
    lines = [f"Usage of {program}:"]
    for flag in flags:
        kind = "" if flag.is_bool else " " + flag.parse.__name__.removeprefix("parse_")
        lines.append(f"  -{flag.name}{kind}\n    \t{flag.help}")
    return "\n".join(lines)
