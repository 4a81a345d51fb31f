"""Table tests for the pure header rules in tusd_py.protocol (no I/O, no server)."""

from __future__ import annotations

import base64
import re
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py import protocol
from tusd_py.errors import TusError
from tusd_py.protocol import (
    Checksum,
    Concat,
    check_tus_resumable,
    format_http_date,
    format_metadata,
    is_offset_octet_stream,
    is_valid_upload_id,
    parse_concat,
    parse_content_length,
    parse_creation_length,
    parse_int,
    parse_metadata,
    parse_offset,
    parse_upload_checksum,
    upload_id_from_url,
)

SUPPORTED_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
INT64_MAX = 2**63 - 1


def assert_tus_error(excinfo: pytest.ExceptionInfo[TusError], status: int, code: str) -> None:
    error = excinfo.value
    assert (error.status, error.code) == (status, code), error
    assert error.body() == f"{code}: {error.message}\n".encode()


# --- parse_int (T-CORE-1, T-CORE-2: 1*DIGIT, at most int64 as tusd) ------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("1234567890", 1234567890),
        ("007", 7),  # 1*DIGIT allows leading zeros
        (" 42 ", 42),  # optional whitespace around a header value
        ("\t5\t", 5),
        (str(INT64_MAX), INT64_MAX),
    ],
)
def test_parse_int_accepts_non_negative_integers(value: str, expected: int) -> None:
    assert parse_int(value, code="ERR_X", name="X") == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-1",  # T-CORE-1/2: non-negative
        "+1",  # not 1*DIGIT
        "-0",
        "1 2",
        "1,2",
        "1.0",
        "1e3",
        "0x10",
        "abc",
        "12abc",
        "\u0661\u0662",  # Arabic-Indic digits: int() takes them, the grammar does not
        "\uff11",  # fullwidth digit one
        str(INT64_MAX + 1),  # larger than tusd's int64
        "9" * 19,
        "1" + "0" * 19,  # 20 digits
        "9" * 400,  # huge, must not be slow or overflow
    ],
)
def test_parse_int_rejects_anything_but_digits_within_int64(value: str) -> None:
    with pytest.raises(TusError) as excinfo:
        parse_int(value, code="ERR_INVALID_OFFSET", name="Upload-Offset")
    assert_tus_error(excinfo, 400, "ERR_INVALID_OFFSET")


# --- check_tus_resumable (T-CORE-4, T-CORE-5, A-11) -------------------------------------------


@pytest.mark.parametrize("value", ["1.0.0", " 1.0.0 "])
def test_check_tus_resumable_accepts_1_0_0(value: str) -> None:
    check_tus_resumable(value)


@pytest.mark.parametrize("value", [None, "", "1.0", "0.2.2", "1.0.1", "2.0.0", "1.0.0,0.2.2", "1.0.0 0.2.2", "v1.0.0"])
def test_check_tus_resumable_answers_412_with_tus_version(value: str | None) -> None:
    # T-CORE-5: 412 and MUST include Tus-Version
    with pytest.raises(TusError) as excinfo:
        check_tus_resumable(value)
    assert_tus_error(excinfo, 412, "ERR_UNSUPPORTED_VERSION")
    assert excinfo.value.headers == {"Tus-Version": "1.0.0"}


# --- parse_creation_length (T-CRE-2, T-DEF-1, T-DEF-2, A-17) -----------------------------------


@pytest.mark.parametrize(
    ("upload_length", "defer_length", "expected"),
    [
        ("0", None, 0),  # T-CRE-3: empty upload
        ("11", None, 11),
        (" 11 ", None, 11),
        (str(INT64_MAX), None, INT64_MAX),
        (None, "1", None),  # T-DEF-1: deferred
        (None, " 1 ", None),
    ],
)
def test_parse_creation_length_accepts_length_xor_defer(
    upload_length: str | None, defer_length: str | None, expected: int | None
) -> None:
    assert parse_creation_length(upload_length, defer_length) == expected


@pytest.mark.parametrize(
    ("upload_length", "defer_length", "code"),
    [
        # both present
        ("11", "1", "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ("0", "1", "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ("11", "0", "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ("abc", "abc", "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        # neither present
        (None, None, "ERR_INVALID_UPLOAD_LENGTH"),
        # T-CORE-2: non-negative integer
        ("", None, "ERR_INVALID_UPLOAD_LENGTH"),
        ("-1", None, "ERR_INVALID_UPLOAD_LENGTH"),
        ("+1", None, "ERR_INVALID_UPLOAD_LENGTH"),
        ("1.5", None, "ERR_INVALID_UPLOAD_LENGTH"),
        ("ten", None, "ERR_INVALID_UPLOAD_LENGTH"),
        (str(INT64_MAX + 1), None, "ERR_INVALID_UPLOAD_LENGTH"),
        # T-DEF-1/T-DEF-2: Upload-Defer-Length must be exactly 1
        (None, "0", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        (None, "2", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        (None, "true", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        (None, "", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        (None, "01", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        (None, "1,1", "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
    ],
)
def test_parse_creation_length_rejects_with_400(upload_length: str | None, defer_length: str | None, code: str) -> None:
    with pytest.raises(TusError) as excinfo:
        parse_creation_length(upload_length, defer_length)
    assert_tus_error(excinfo, 400, code)


# --- parse_offset (T-CORE-1, A-10) -------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("5", 5), (" 5 ", 5), (str(INT64_MAX), INT64_MAX)])
def test_parse_offset_accepts_non_negative_integer(value: str, expected: int) -> None:
    assert parse_offset(value) == expected


@pytest.mark.parametrize("value", [None, "", "-1", "+5", "5.0", "five", str(INT64_MAX + 1)])
def test_parse_offset_rejects_missing_or_bad_with_400(value: str | None) -> None:
    # the spec is silent; 400 ERR_INVALID_OFFSET as tusd
    with pytest.raises(TusError) as excinfo:
        parse_offset(value)
    assert_tus_error(excinfo, 400, "ERR_INVALID_OFFSET")


# --- parse_content_length ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", 0), ("12", 12), (" 12 ", 12)])
def test_parse_content_length(value: str | None, expected: int | None) -> None:
    assert parse_content_length(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "+1", "1.0", "twelve", "12, 12", str(INT64_MAX + 1)])
def test_parse_content_length_rejects_non_integers_with_400(value: str) -> None:
    with pytest.raises(TusError) as excinfo:
        parse_content_length(value)
    assert_tus_error(excinfo, 400, "ERR_INVALID_CONTENT_LENGTH")


# --- is_offset_octet_stream (T-CORE-15, A-24) ---------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/offset+octet-stream", True),
        ("Application/Offset+Octet-Stream", True),  # media types are case-insensitive
        ("APPLICATION/OFFSET+OCTET-STREAM", True),
        ("application/offset+octet-stream; charset=utf-8", True),  # parameters ignored
        ("application/offset+octet-stream;foo=bar", True),
        ("  application/offset+octet-stream  ", True),
        ("application/offset+octet-stream ; q=1", True),
        (None, False),
        ("", False),
        ("application/octet-stream", False),
        ("application/offset+octet-streamx", False),
        ("xapplication/offset+octet-stream", False),
        ("text/plain", False),
        ("application/offset+octet-stream, text/plain", False),
    ],
)
def test_is_offset_octet_stream(content_type: str | None, expected: bool) -> None:
    assert is_offset_octet_stream(content_type) is expected


# --- Upload-Metadata (T-META-1..8, A-4, A-14) -----------------------------------------------------


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode("ascii")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # The spec's example (T-META-7: a key without value)
        (
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
            {"filename": "world_domination_plan.pdf", "is_confidential": ""},
        ),
        # An absent, empty or blank header means no metadata (tuspy sends `Upload-Metadata:`)
        (None, {}),
        ("", {}),
        ("   ", {}),
        ("\t", {}),
        ("key", {"key": ""}),
        ("key ", {"key": ""}),  # trailing space: empty value (base64 of b"")
        ("a dmFs", {"a": "val"}),
        ("a dmFs,b dmFsdWU=", {"a": "val", "b": "value"}),
        ("a dmFs, b dmFsdWU=", {"a": "val", "b": "value"}),  # whitespace around pairs
        (" a dmFs ,  b ", {"a": "val", "b": ""}),
        ("A dmFs,a dmFs", {"A": "val", "a": "val"}),  # keys are case-sensitive, so not duplicates
        ("weird!#$%&'*+-./:;<=>?@[]^_`{|}~ dmFs", {"weird!#$%&'*+-./:;<=>?@[]^_`{|}~": "val"}),  # printable ASCII
        (f"name {b64('héllo wörld ☃')}", {"name": "héllo wörld ☃"}),  # UTF-8 values
        (f"name {b64('a, b c')}", {"name": "a, b c"}),  # spaces/commas inside the encoded value
        ("bin //4A", {"bin": "\udcff\udcfe\x00"}),  # non-UTF-8 bytes b"\xff\xfe\x00" survive
    ],
)
def test_parse_metadata_accepts(header: str | None, expected: dict[str, str]) -> None:
    assert parse_metadata(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "a dmFs,a dmFs",  # T-META-6: duplicate key
        "a dmFs,a",  # duplicate key, second without value
        "a,a",
        ",a dmFs",  # T-META-3: empty key
        "a dmFs,",  # trailing comma: an empty pair
        "a dmFs,,b dmFs",
        ",",
        "a b c",  # T-META-3: a key with a space (three parts)
        "a dmFs dmFs",
        "a  dmFs",  # T-META-2: exactly one space between key and value
        "ke\x01y dmFs",  # T-META-8: control characters would be header smuggling
        "ke\ty dmFs",
        "key\x7f dmFs",
        "ke\x00y",
        "ke\ny dmFs",
        "ke\ry",
        "a !!!!",  # T-META-5: value must be base64
        "a dm Fs",
        "a dmE",  # missing padding ("va" is dmE=)
        "a dmFsdQ",  # missing padding ("valu" is dmFsdQ==)
        "a d",
        "a -_-_",  # URL-safe alphabet is not base64
        "a dmE=dmE=",
        "a ====",
        "a dmFs,b !",  # one bad pair fails the whole header
    ],
)
def test_parse_metadata_rejects_with_400(header: str) -> None:
    # 400 (tusd drops such pairs silently; the spec rules are MUSTs)
    with pytest.raises(TusError) as excinfo:
        parse_metadata(header)
    assert_tus_error(excinfo, 400, "ERR_INVALID_METADATA")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, ""),
        (
            {"filename": "world_domination_plan.pdf", "is_confidential": ""},
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
        ),
        ({"a": ""}, "a"),  # T-META-7: the separating space may be left out
        ({"a": "val", "b": "value"}, "a dmFs,b dmFsdWU="),
        ({"bin": "\udcff\udcfe"}, "bin //4="),  # surrogateescape'd bytes go back to the raw bytes
        ({"snow": "☃"}, f"snow {b64('☃')}"),
    ],
)
def test_format_metadata(metadata: dict[str, str], expected: str) -> None:
    assert format_metadata(metadata) == expected


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"\xff", b"\x80\x81", b"\xed\xa0\x80", b"\xc3", b"ok\xe2\x98", bytes(range(256))],
)
def test_metadata_round_trips_non_utf8_bytes(raw: bytes) -> None:
    # T-META-9: HEAD echoes the value the client sent, whatever its bytes
    header = f"k {b64(raw)}"
    decoded = parse_metadata(header)
    assert decoded["k"].encode("utf-8", "surrogateescape") == raw
    assert parse_metadata(format_metadata(decoded)) == decoded
    if raw:
        assert format_metadata(decoded) == header


METADATA_KEY_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ",")


@given(
    st.dictionaries(
        keys=st.text(alphabet=METADATA_KEY_CHARS, min_size=1, max_size=16),
        values=st.binary(max_size=64).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
        max_size=8,
    )
)
def test_format_then_parse_metadata_round_trips(metadata: dict[str, str]) -> None:
    header = format_metadata(metadata)
    assert parse_metadata(header) == metadata
    assert header.isascii() and not any(ch in header for ch in "\r\n\x00")


# --- Upload-Checksum (T-CHK-7, T-CHK-9, A-23) --------------------------------------------------------

SPEC_SHA1 = "Kq5sNclPz7QV2+lfQIuc6R7oRu0="


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        (f"sha1 {SPEC_SHA1}", Checksum("sha1", base64.b64decode(SPEC_SHA1))),
        (f" sha1 {SPEC_SHA1} ", Checksum("sha1", base64.b64decode(SPEC_SHA1))),
        ("md5 1B2M2Y8AsgTpgAmY7PhCfg==", Checksum("md5", bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"))),
        (
            "sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            Checksum("sha256", bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
        ),
    ],
)
def test_parse_upload_checksum_accepts(header: str | None, expected: Checksum | None) -> None:
    assert parse_upload_checksum(header, SUPPORTED_ALGORITHMS) == expected


def test_parse_upload_checksum_spec_example_is_the_raw_sha1_digest() -> None:
    checksum = parse_upload_checksum(f"sha1 {SPEC_SHA1}", SUPPORTED_ALGORITHMS)
    assert checksum is not None and len(checksum.digest) == 20


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("crc32 AAAAAA==", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("sha3-256 AAAA", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("blake2b AAAA", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        (f"SHA1 {SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),  # T-CHK-7: no uppercase in algorithm names
        (f"Sha1 {SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),
        (f"sha1{SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),  # T-CHK-9: separated by a space
        (f"sha1:{SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),
        (f"sha1={SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),
        (f"sha1 {SPEC_SHA1} extra", "ERR_INVALID_CHECKSUM"),  # extra parts
        (f"sha1  {SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),
        (f"sha1\t{SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),
        ("sha1 !!!!", "ERR_INVALID_CHECKSUM"),  # bad base64
        ("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0", "ERR_INVALID_CHECKSUM"),  # missing padding
        ("sha1 Kq5sNclPz7QV2-lfQIuc6R7oRu0=", "ERR_INVALID_CHECKSUM"),  # URL-safe alphabet
        ("sha1", "ERR_INVALID_CHECKSUM"),
        ("sha1 ", "ERR_INVALID_CHECKSUM"),
        ("", "ERR_INVALID_CHECKSUM"),
        (" ", "ERR_INVALID_CHECKSUM"),
        (f"shä1 {SPEC_SHA1}", "ERR_INVALID_CHECKSUM"),  # T-CHK-7: ASCII only
    ],
)
def test_parse_upload_checksum_rejects_with_400(header: str, code: str) -> None:
    with pytest.raises(TusError) as excinfo:
        parse_upload_checksum(header, SUPPORTED_ALGORITHMS)
    assert_tus_error(excinfo, 400, code)


# --- Upload-Concat (T-CON-2, T-CON-5, T-CON-16, A-16) ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("partial", Concat(is_partial=True)),
        (" partial ", Concat(is_partial=True)),
        (
            "final;http://127.0.0.1:1080/files/a http://127.0.0.1:1080/files/b",
            Concat(is_partial=False, partial_urls=("http://127.0.0.1:1080/files/a", "http://127.0.0.1:1080/files/b")),
        ),
        ("final;/files/a /files/b", Concat(is_partial=False, partial_urls=("/files/a", "/files/b"))),
        ("final; /files/a  /files/b ", Concat(is_partial=False, partial_urls=("/files/a", "/files/b"))),
        ("final;/files/a http://h/files/b", Concat(is_partial=False, partial_urls=("/files/a", "http://h/files/b"))),
        ("final;/files/a /files/a", Concat(is_partial=False, partial_urls=("/files/a", "/files/a"))),  # T-CON-10
    ],
)
def test_parse_concat_accepts(header: str | None, expected: Concat | None) -> None:
    assert parse_concat(header) == expected
    if expected is not None:
        assert expected.is_final is not expected.is_partial


@pytest.mark.parametrize(
    "header",
    [
        "final;",  # no partial uploads listed
        "final;   ",
        "final",  # no ';'
        "final /files/a",
        "Final;/files/a",
        "FINAL;/files/a",
        "Partial",
        "partial;/files/a",
        "partial final",
        "",
        " ",
        ";/files/a",
        "garbage",
        "finally;/files/a",
    ],
)
def test_parse_concat_rejects_with_400(header: str) -> None:
    with pytest.raises(TusError) as excinfo:
        parse_concat(header)
    assert_tus_error(excinfo, 400, "ERR_INVALID_CONCAT")


ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "base_path", "expected"),
    [
        (f"http://127.0.0.1:1080/files/{ID}", "/files/", ID),
        (f"https://example.com/files/{ID}", "/files/", ID),
        (f"/files/{ID}", "/files/", ID),  # relative (T-CON-16)
        (ID, "/files/", ID),  # a bare id, relative to the creation URL
        (f"http://127.0.0.1:1080/files/{ID}?x=1", "/files/", ID),
        (f"http://127.0.0.1:1080/files/{ID}#frag", "/files/", ID),
        (f"/uploads/{ID}", "/uploads/", ID),
        (f"http://h/api/v1/files/{ID}", "/api/v1/files/", ID),
        ("/files/%41bc", "/files/", "Abc"),  # percent-decoded
        ("/files/a_b-C", "/files/", "a_b-C"),
        ("/files/" + "a" * 128, "/files/", "a" * 128),
    ],
)
def test_upload_id_from_url(url: str, base_path: str, expected: str) -> None:
    assert upload_id_from_url(url, base_path) == expected


@pytest.mark.parametrize(
    ("url", "base_path"),
    [
        # outside the base path
        (f"http://127.0.0.1:1080/other/{ID}", "/files/"),
        (f"/other/{ID}", "/files/"),
        (f"/uploads/{ID}", "/files/"),
        (f"/files/{ID}", "/uploads/"),
        (f"files/{ID}", "/files/"),
        (f"/filesx/{ID}", "/files/"),
        (f"/{ID}", "/files/"),
        # hostile or malformed ids
        ("/files/", "/files/"),
        ("http://127.0.0.1:1080/files/", "/files/"),
        ("/files/../etc/passwd", "/files/"),
        ("/files/..", "/files/"),
        ("/files/%2e%2e", "/files/"),
        ("/files/%2E%2E/secret", "/files/"),
        ("/files/a%2Fb", "/files/"),
        ("/files/a/b", "/files/"),
        ("/files/a%00", "/files/"),
        ("/files/a%0d%0aX-Evil:1", "/files/"),
        (f"/files/{ID}.info", "/files/"),
        ("/files/a b", "/files/"),
        ("/files/a%20b", "/files/"),
        ("/files/" + "a" * 129, "/files/"),
        ("..", "/files/"),
        (".", "/files/"),
        ("", "/files/"),
        ("a.info", "/files/"),
        ("%2e%2e", "/files/"),
    ],
)
def test_upload_id_from_url_rejects_with_400(url: str, base_path: str) -> None:
    with pytest.raises(TusError) as excinfo:
        upload_id_from_url(url, base_path)
    assert_tus_error(excinfo, 400, "ERR_INVALID_CONCAT")


# --- format_http_date (T-EXP-7: IMF-fixdate) ------------------------------------------------------------

IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT"
)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (0.999, "Thu, 01 Jan 1970 00:00:00 GMT"),  # sub-second part dropped, never rounded up
        (1403712000, "Wed, 25 Jun 2014 16:00:00 GMT"),  # the spec's example
        (784111777, "Sun, 06 Nov 1994 08:49:37 GMT"),  # RFC 9110's example
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (4102444799, "Thu, 31 Dec 2099 23:59:59 GMT"),
    ],
)
def test_format_http_date_is_imf_fixdate(timestamp: float, expected: str) -> None:
    text = format_http_date(timestamp)
    assert text == expected
    assert IMF_FIXDATE.fullmatch(text)
    assert parsedate_to_datetime(text).timestamp() == int(timestamp)


# --- is_valid_upload_id (ids on the path; the filesystem is never asked about others) ------------


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (ID, True),
        ("a", True),
        ("A-b_9", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        (".", False),
        ("..", False),
        ("a.info", False),
        ("a/b", False),
        ("a\\b", False),
        ("a b", False),
        ("a\x00", False),
        ("a\n", False),  # `$` in a regex would let a trailing newline through
        ("é", False),
        ("%2e", False),
        ("~a", False),
    ],
)
def test_is_valid_upload_id(candidate: str, expected: bool) -> None:
    assert is_valid_upload_id(candidate) is expected


def test_module_has_no_untested_public_functions() -> None:
    # A new public function in protocol.py should get its own table here.
    tested = {
        "is_valid_upload_id",
        "parse_int",
        "check_tus_resumable",
        "parse_creation_length",
        "parse_offset",
        "parse_content_length",
        "is_offset_octet_stream",
        "parse_metadata",
        "format_metadata",
        "parse_upload_checksum",
        "parse_concat",
        "upload_id_from_url",
        "format_http_date",
    }
    public = {
        name
        for name, value in vars(protocol).items()
        if callable(value)
        and not name.startswith("_")
        and not isinstance(value, type)
        and getattr(value, "__module__", None) == protocol.__name__
    }
    assert public <= tested, public - tested
