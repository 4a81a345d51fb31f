"""Go-style flags and durations (tusd_py.flags), and the CLI's flag table (tusd_py.cli)."""

from __future__ import annotations

from typing import Any

import pytest

from tusd_py.cli import FLAGS, config_from_args
from tusd_py.config import Config
from tusd_py.flags import Flag, FlagError, parse_bool, parse_duration, parse_flags, usage

# --- parse_duration: Go's time.ParseDuration syntax; a bare number is seconds -----------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),  # bare number: seconds
        ("1.5", 1.5),
        ("0s", 0.0),
        ("90s", 90.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("500ms", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("1000000ns", 0.001),
        ("5m", 300.0),
        ("168h", 604800.0),  # tusd's default expiration
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("2m30.5s", 150.5),
        ("1h0m0s", 3600.0),  # what Go's Duration.String() prints
        ("1m1m", 120.0),  # Go adds repeated units
        (" 10s ", 10.0),
    ],
)
def test_parse_duration_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "h",
        "abc",
        "10x",
        "10 s",
        "1h 30m",
        "1d",
        "1w",
        "10S",
        "10H",
        "1h30",
        "ten s",
        "1e3s",
        "s10",
        "1..5s",
        "1h-30m",
    ],
)
def test_parse_duration_rejects_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("t", True),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("0", False),
        ("f", False),
        ("false", False),
        ("FALSE", False),
        ("False", False),
    ],
)
def test_parse_bool_go_syntax(text: str, expected: bool) -> None:
    # Go's strconv.ParseBool
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "yes", "no", "on", "2", "tru"])
def test_parse_bool_rejects_others(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(text)


# --- parse_flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {}),
        (["-port", "1080"], {"port": 1080}),
        (["-port=1080"], {"port": 1080}),
        (["--port=1080"], {"port": 1080}),
        (["--port", "1080"], {"port": 1080}),
        (["-port", "1", "-port", "2"], {"port": 2}),  # the last one wins, as in Go
        (["-disable-termination"], {"disable_termination": True}),
        (["--disable-termination"], {"disable_termination": True}),
        (["-disable-termination=false"], {"disable_termination": False}),
        (["-disable-termination=true"], {"disable_termination": True}),
        (["-disable-termination=0"], {"disable_termination": False}),
        (["-upload-dir", "-weird"], {"upload_dir": "-weird"}),  # a non-bool flag takes the next word, as in Go
        (["-upload-dir="], {"upload_dir": ""}),
        (["-base-path", "/a=b/"], {"base_path": "/a=b/"}),  # only the first '=' splits
        (["-base-path=/a=b/"], {"base_path": "/a=b/"}),
        (["-expiration", "1h30m"], {"expiration": 5400.0}),
        (["-expiration=500ms"], {"expiration": 0.5}),
        (["-expiration", "0"], {"expiration": 0.0}),
        (
            ["-max-size", "100", "-disable-concatenation", "-host", "::1"],
            {"max_size": 100, "disable_concatenation": True, "host": "::1"},
        ),
        (["-port", "1080", "--"], {"port": 1080}),  # `--` ends the flags
    ],
)
def test_parse_flags_go_forms(argv: list[str], expected: dict[str, Any]) -> None:
    values = parse_flags(FLAGS, argv)
    assert {name.replace("-", "_"): value for name, value in values.items()} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-nonsense"], "flag provided but not defined: -nonsense"),
        (["--nonsense=1"], "flag provided but not defined: -nonsense"),
        (["-Port", "1080"], "flag provided but not defined: -Port"),  # names are case-sensitive
        (["-port"], "flag needs an argument: -port"),  # missing argument
        (["-upload-dir"], "flag needs an argument: -upload-dir"),
        (["-port", "1080", "-expiration"], "flag needs an argument: -expiration"),
        (["-port", "abc"], "invalid value 'abc' for flag -port"),
        (["-port=abc"], "invalid value 'abc' for flag -port"),
        (["-expiration", "forever"], "invalid value 'forever' for flag -expiration"),
        (["-disable-termination=maybe"], "invalid value 'maybe' for flag -disable-termination"),
        (["stray"], "unexpected argument 'stray'"),  # stray positional
        (["-port", "1080", "stray"], "unexpected argument 'stray'"),
        # Go would set the bool to true and silently stop at `false`; we refuse instead.
        (["-disable-termination", "false"], "unexpected argument 'false'"),
        (["-"], "unexpected argument '-'"),
        (["--", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_parse_flags_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as excinfo:
        parse_flags(FLAGS, argv)
    assert message in str(excinfo.value)


def test_parse_flags_unknown_flag_message_is_gos() -> None:
    with pytest.raises(FlagError) as excinfo:
        parse_flags([Flag("a", str, "")], ["-x"])
    assert str(excinfo.value) == "flag provided but not defined: -x"


def test_flag_table_has_tusd_names() -> None:
    names = {flag.name for flag in FLAGS}
    assert {
        "host",
        "port",
        "base-path",
        "upload-dir",
        "max-size",
        "disable-termination",
        "disable-concatenation",
        "expiration",
    } <= names


def test_every_flag_maps_to_a_config_field() -> None:
    # A flag that the Config ignores would be accepted and then silently do nothing.
    # (-version is an action, not configuration: it prints and exits.)
    fields = set(Config.__dataclass_fields__)
    assert {flag.name.replace("-", "_") for flag in FLAGS if flag.name != "version"} <= fields


def test_usage_lists_every_flag() -> None:
    text = usage("tusd-py", FLAGS)
    assert text.startswith("Usage of tusd-py:")
    for flag in FLAGS:
        assert f"  -{flag.name}" in text


# --- config_from_args -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], Config()),
        (["-port", "1080", "-host", "127.0.0.1"], Config(port=1080, host="127.0.0.1")),
        (["-base-path", "/uploads/"], Config(base_path="/uploads/")),
        (["-base-path", "uploads"], Config(base_path="/uploads/")),  # normalised like tusd
        (["-base-path=/a/b"], Config(base_path="/a/b/")),
        (["-max-size", "100"], Config(max_size=100)),
        (
            ["-expiration", "1h30m", "-expiration-sweep-interval", "500ms"],
            Config(expiration=5400.0, expiration_sweep_interval=0.5),
        ),
        (
            ["-disable-termination", "-disable-concatenation=true"],
            Config(disable_termination=True, disable_concatenation=True),
        ),
    ],
)
def test_config_from_args(argv: list[str], expected: Config) -> None:
    assert config_from_args(argv) == expected
