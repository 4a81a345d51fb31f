"""Property tests over every header parser the server runs on client input.

For each parser in `tusd_py.protocol`, `tusd_py.digests`, `tusd_py.urls` and
`tusd_py.download`: arbitrary text either parses or raises `TusError` (with
the status and code the wire policy gives) and never anything else, since
any other exception is a 500 (wire policy: never 500 for bad input). Where a
formatter exists, what it writes parses back to the same value.

Inputs are drawn three ways: arbitrary Unicode, latin-1 text (what Starlette
hands over: header bytes decoded as latin-1), and concatenations of fragments
that mean something to these grammars (digits, separators, `bytes=`,
`final;`, base64, brackets...), which reach deep branches much faster than
random characters. Hypothesis runs derandomized with a fixed number of
examples and no example database, so every run tries the same inputs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import string
from email.utils import parsedate_to_datetime

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tusd_py import digests, download, protocol, urls
from tusd_py.checksum import ALGORITHMS, SUPPORTED
from tusd_py.errors import TusError
from tusd_py.stores import StoredBytes

settings.register_profile(
    "tusd-fuzz-protocol",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=250,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ = settings(settings.get_profile("tusd-fuzz-protocol"))

# --- strategies ------------------------------------------------------------------------------

LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
FRAGMENTS = [
    "0", "1", "7", "9", "00", "18446744073709551616", "9223372036854775807", "9223372036854775808",
    "9" * 4301,  # past Python's int() digit limit
    "-", "+", " ", "\t", ",", ";", "=", ":", ".", "..", "/", "%", "%2F", "%00", "\x00", "\r", "\n", "\x7f",
    "\xb2", "\xb9", "\xbd", "\xa0", "\x85", "\u0661", "\uff11", "\u2028", "\udcff",
    "bytes", "bytes=", "BYTES=", "items=", "final", "final;", "partial", "http://", "https://", "//",
    "[", "]", "[::1", "::1]", "@", "?", "#", "host=", "proto=", '"', "for=", "127.0.0.1", ":80", ":443",
    "/files/", "files", "abc", "x" * 129, "0123456789abcdef0123456789abcdef",
    "md5", "sha1", "sha256", "sha512", "SHA256", "sha-256", "sha-512", "sha", "unknown",
    "dmFs", "dmFs=", "dmFsdWU=", "====", "AAAAAAAAAAAAAAAAAAAAAA==", "d41d8cd98f00b204e9800998ecf8427e",
    "1.0.0", "1.0", "application/offset+octet-stream", "text/plain", "W/", "*",
]  # fmt: skip
FRAGMENT_TEXT = st.lists(st.sampled_from(FRAGMENTS) | st.text(LATIN1, max_size=3), max_size=12).map("".join)
HEADER_TEXT = st.text(LATIN1, max_size=60) | FRAGMENT_TEXT
ANY_TEXT = st.text(max_size=60) | HEADER_TEXT
OPTIONAL_TEXT = st.none() | ANY_TEXT

UPLOAD_IDS = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=128)
METADATA_KEYS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1)
# Values as the server holds them: raw bytes decoded with surrogateescape.
METADATA_VALUES = st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
INT64_MAX = 2**63 - 1
ALGORITHM_NAMES = st.sampled_from(SUPPORTED)
HTTP_NAMES = {"sha256": "sha-256", "sha512": "sha-512", "md5": "md5", "sha1": "sha"}

# Grammar-shaped values: nearly right, with one part wrong, where parsers hide their int() and urlsplit().
NUMBERS = (
    st.integers(-5, 2**64).map(str)
    | st.sampled_from(["", " 1", "1 ", "01", "+1", "1e3", "\xb2", "\xb9", "1\xb2", "9" * 4301, "1" * 5000, "0" * 5000])
)  # fmt: skip
OWS = st.sampled_from(["", " ", "\t"])


def joined(separator: str, part: st.SearchStrategy[str], max_size: int = 4) -> st.SearchStrategy[str]:
    return st.lists(part, min_size=1, max_size=max_size).map(separator.join)


RANGE_HEADERS = st.builds(
    lambda unit, specs: f"{unit}={specs}",
    st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
    joined(",", st.builds(lambda ows, a, b: f"{ows}{a}-{b}{ows}", OWS, NUMBERS, NUMBERS) | HEADER_TEXT),
)
WANT_DIGEST_HEADERS = joined(
    ",", st.builds(lambda k, v, p: f"{k}={v}{p}", st.sampled_from([*HTTP_NAMES.values(), "sha-384", "x"]),
                   NUMBERS | HEADER_TEXT, st.sampled_from(["", ";q", ";a=1"])) | HEADER_TEXT,
)  # fmt: skip
URL_HOSTS = st.sampled_from(
    ["", "http://127.0.0.1:1080", "https://h", "http://[::1]", "http://[::1", "http://::1]", "//[x", "http://[v1.x]",
     "http://a\uff03b", "http://a\u2100b", "http://\xaa", "http://h:99999", "http://h:x", "http://u@h", "ftp://h"]
)  # fmt: skip
URL_PATHS = st.sampled_from(["/files/", "/", "/files", "/other/", "", "/files/%2e%2e/", "/files/a/"])
CONCAT_URLS = st.builds(
    lambda host, path, upload_id: host + path + upload_id,
    URL_HOSTS,
    URL_PATHS,
    UPLOAD_IDS | HEADER_TEXT | st.sampled_from(["%00", "..", "%2F", "a%20b", "?x=1", "#f"]),
)
CONCAT_HEADERS = st.builds(
    lambda kind, urls: f"{kind};{urls}", st.sampled_from(["final", " final ", "partial"]), joined(" ", CONCAT_URLS)
) | st.sampled_from(["partial", "final", "final;", "final; "])
BASE64 = st.binary(max_size=70).map(lambda raw: base64.b64encode(raw).decode())
METADATA_HEADERS = joined(
    ",", st.builds(lambda ows, k, sep, v: f"{ows}{k}{sep}{v}", OWS, METADATA_KEYS | HEADER_TEXT,
                   st.sampled_from([" ", "", "  ", "\t"]), BASE64 | HEADER_TEXT) | HEADER_TEXT,
)  # fmt: skip
CHECKSUM_HEADERS = st.builds(
    lambda a, sep, d: f"{a}{sep}{d}",
    st.sampled_from([*SUPPORTED, *HTTP_NAMES.values(), "SHA256", "crc32", "", "MD5", "sha-1", "SHA-256"]) | HEADER_TEXT,
    st.sampled_from([" ", "  ", "", "\t", "="]),
    BASE64 | st.binary(max_size=64).map(bytes.hex) | HEADER_TEXT,
)
REPR_DIGEST_HEADERS = joined(
    ",", st.builds(lambda k, v, p: f"{k}={v}{p}", st.sampled_from([*HTTP_NAMES.values(), "sha-384", "X", "*a"]),
                   BASE64.map(lambda b: f":{b}:") | HEADER_TEXT, st.sampled_from(["", ";a=1", ";"])) | HEADER_TEXT,
)  # fmt: skip
FORWARDED_HEADERS = joined(
    ";",
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["host", "proto", "for", "HOST"]),
        HEADER_TEXT | st.sampled_from(['"h:1"', "https", "[::1]:8", "a/b", ""]),
    ),
)


def digest_of(algorithm: str) -> st.SearchStrategy[bytes]:
    size = hashlib.new(ALGORITHMS[algorithm]).digest_size
    return st.binary(min_size=size, max_size=size)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def call(parser, *args, codes: set[str], status: int = 400):  # type: ignore[no-untyped-def]
    """Run a parser: a value, or None after a TusError with one of the expected codes."""
    try:
        return parser(*args)
    except TusError as error:
        assert error.status == status, (args, error)
        assert error.code in codes, (args, error)
        assert error.body() == f"{error.code}: {error.message}\n".encode()
        return None


# --- protocol: integers (T-CORE-1, T-CORE-2) -------------------------------------------------


@FUZZ
@given(ANY_TEXT | NUMBERS)
def test_parse_int_returns_a_non_negative_int64_or_400(value: str) -> None:
    try:
        result = protocol.parse_int(value, code="ERR_X", name="X")
    except TusError as error:
        assert (error.status, error.code) == (400, "ERR_X")
        return
    assert 0 <= result <= INT64_MAX
    assert value.strip().isascii() and value.strip().isdigit()
    assert int(value.strip()) == result


@FUZZ
@given(st.integers(0, INT64_MAX), st.sampled_from(["", " ", "\t", "  "]), st.sampled_from(["", "0", "00"]))
def test_parse_int_round_trips(number: int, padding: str, zeros: str) -> None:
    text = zeros + str(number)
    assume(len(text) <= 19)
    assert protocol.parse_int(padding + text + padding, code="E", name="X") == number


@FUZZ
@given(OPTIONAL_TEXT | NUMBERS)
def test_parse_offset_and_content_length(value: str | None) -> None:
    offset = call(protocol.parse_offset, value, codes={"ERR_INVALID_OFFSET"})
    assert offset is None or 0 <= offset <= INT64_MAX
    length = call(protocol.parse_content_length, value, codes={"ERR_INVALID_CONTENT_LENGTH"})
    assert length is None or 0 <= length <= INT64_MAX
    if value is None:
        assert length is None


@FUZZ
@given(OPTIONAL_TEXT | NUMBERS, OPTIONAL_TEXT | NUMBERS)
def test_parse_creation_length(upload_length: str | None, defer_length: str | None) -> None:
    # T-CRE-*, T-DEF-*: Upload-Length xor Upload-Defer-Length: 1.
    codes = {"ERR_AMBIGUOUS_UPLOAD_LENGTH", "ERR_INVALID_UPLOAD_LENGTH", "ERR_INVALID_UPLOAD_LENGTH_DEFER"}
    try:
        size = protocol.parse_creation_length(upload_length, defer_length)
    except TusError as error:
        assert error.status == 400 and error.code in codes, error
        return
    if size is None:
        assert upload_length is None and defer_length is not None and defer_length.strip() == "1"
    else:
        assert defer_length is None and 0 <= size <= INT64_MAX


@FUZZ
@given(OPTIONAL_TEXT)
def test_check_tus_resumable_accepts_only_1_0_0(value: str | None) -> None:
    # T-CORE-*: anything but 1.0.0 is 412 with Tus-Version.
    try:
        protocol.check_tus_resumable(value)
    except TusError as error:
        assert (error.status, error.code) == (412, "ERR_UNSUPPORTED_VERSION")
        assert error.headers == {"Tus-Version": "1.0.0"}
        assert value is None or value.strip() != "1.0.0"
        return
    assert value is not None and value.strip() == "1.0.0"


@FUZZ
@given(OPTIONAL_TEXT)
def test_is_offset_octet_stream_is_a_plain_predicate(value: str | None) -> None:
    result = protocol.is_offset_octet_stream(value)
    assert result is (value is not None and value.split(";", 1)[0].strip().lower() == protocol.OFFSET_OCTET_STREAM)


@FUZZ
@given(ANY_TEXT | UPLOAD_IDS)
def test_is_valid_upload_id_only_admits_url_safe_tokens(candidate: str) -> None:
    valid = protocol.is_valid_upload_id(candidate)
    assert valid is bool(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", candidate, re.ASCII))
    if valid:
        assert "." not in candidate and "/" not in candidate and "\x00" not in candidate


# --- protocol: Upload-Metadata (T-META-*) ---------------------------------------------------------


@FUZZ
@given(OPTIONAL_TEXT | METADATA_HEADERS)
def test_parse_metadata_returns_a_map_or_400(header: str | None) -> None:
    metadata = call(protocol.parse_metadata, header, codes={"ERR_INVALID_METADATA"})
    if metadata is None:
        return
    for key, value in metadata.items():
        assert re.fullmatch(r"[!-+\--~]+", key), key
        assert value.encode("utf-8", "surrogateescape") is not None
    # What we echo on HEAD parses back to the same map.
    assert protocol.parse_metadata(protocol.format_metadata(metadata)) == metadata


@FUZZ
@given(st.dictionaries(METADATA_KEYS, METADATA_VALUES, max_size=6))
def test_metadata_round_trips(metadata: dict[str, str]) -> None:
    header = protocol.format_metadata(metadata)
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert protocol.parse_metadata(header) == metadata


# --- protocol: Upload-Checksum (T-CHK-*) --------------------------------------------------------


@FUZZ
@given(OPTIONAL_TEXT | CHECKSUM_HEADERS)
def test_parse_upload_checksum_returns_a_checksum_or_400(header: str | None) -> None:
    codes = {"ERR_INVALID_CHECKSUM", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"}
    checksum = call(protocol.parse_upload_checksum, header, SUPPORTED, codes=codes)
    if checksum is not None:
        assert checksum.algorithm in SUPPORTED and isinstance(checksum.digest, bytes)
    elif header is None:
        assert protocol.parse_upload_checksum(None, SUPPORTED) is None


@FUZZ
@given(ALGORITHM_NAMES, st.binary(min_size=1, max_size=64))
def test_upload_checksum_round_trips(algorithm: str, digest: bytes) -> None:
    header = f"{algorithm} {b64(digest)}"
    assert protocol.parse_upload_checksum(header, SUPPORTED) == protocol.Checksum(algorithm, digest)


# --- protocol: Upload-Concat (T-CON-*) ----------------------------------------------------------


@FUZZ
@given(OPTIONAL_TEXT | CONCAT_HEADERS, st.sampled_from(["/files/", "/", "/api/v1/uploads/"]))
def test_parse_concat_and_partial_ids_never_crash(header: str | None, base_path: str) -> None:
    # What the handler does with a final's header: parse it, then map every URL to an id.
    concat = call(protocol.parse_concat, header, codes={"ERR_INVALID_CONCAT"})
    if concat is None:
        return
    assert concat.is_partial != concat.is_final
    for url in concat.partial_urls:
        upload_id = call(protocol.upload_id_from_url, url, base_path, codes={"ERR_INVALID_CONCAT"})
        assert upload_id is None or protocol.is_valid_upload_id(upload_id)


@FUZZ
@given(ANY_TEXT | CONCAT_URLS, st.sampled_from(["/files/", "/", "/api/v1/uploads/"]))
def test_upload_id_from_url_returns_a_valid_id_or_400(url: str, base_path: str) -> None:
    upload_id = call(protocol.upload_id_from_url, url, base_path, codes={"ERR_INVALID_CONCAT"})
    assert upload_id is None or protocol.is_valid_upload_id(upload_id)


@FUZZ
@given(
    st.lists(UPLOAD_IDS, min_size=1, max_size=5),
    st.sampled_from(["http://127.0.0.1:1080", "https://example.com", "http://[::1]:8080", ""]),
)
def test_concat_final_round_trips(ids: list[str], origin: str) -> None:
    partial_urls = tuple(f"{origin}/files/{upload_id}" for upload_id in ids)
    concat = protocol.parse_concat("final;" + " ".join(partial_urls))
    assert concat == protocol.Concat(is_partial=False, partial_urls=partial_urls)
    assert [protocol.upload_id_from_url(url, "/files/") for url in concat.partial_urls] == ids
    assert protocol.parse_concat(" partial ") == protocol.Concat(is_partial=True)


# --- protocol: dates (T-EXP-*) ------------------------------------------------------------------


@FUZZ
@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False))
def test_http_date_round_trips(timestamp: float) -> None:
    text = protocol.format_http_date(timestamp)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", text), text
    assert parsedate_to_datetime(text).timestamp() == int(timestamp)


# --- digests: whole-file checksum declarations ------------------------------------------------

DIGEST_CODES = {"ERR_INVALID_DIGEST", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"}


@FUZZ
@given(ANY_TEXT | CHECKSUM_HEADERS)
def test_parse_metadata_checksum_returns_a_sized_digest_or_400(value: str) -> None:
    parsed = call(digests.parse_metadata_checksum, value, codes=DIGEST_CODES)
    if parsed is not None:
        algorithm, digest = parsed
        assert len(digest) == hashlib.new(ALGORITHMS[algorithm]).digest_size


@FUZZ
@given(ALGORITHM_NAMES.flatmap(lambda a: st.tuples(st.just(a), digest_of(a))), st.booleans(), st.booleans())
def test_metadata_checksum_round_trips(declared: tuple[str, bytes], as_hex: bool, shout: bool) -> None:
    algorithm, digest = declared
    # Case-insensitive, dashes allowed: sha256, SHA-256, sha1, SHA-1.
    name = {"sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512", "md5": "MD5"}[algorithm] if shout else algorithm
    text = f"{name} {digest.hex() if as_hex else b64(digest)}"
    assert digests.parse_metadata_checksum(text) == (algorithm, digest)


@FUZZ
@given(ANY_TEXT | REPR_DIGEST_HEADERS)
def test_parse_repr_digest_returns_digests_or_400(header: str) -> None:
    parsed = call(digests.parse_repr_digest, header, codes=DIGEST_CODES)
    if parsed is not None:
        assert parsed and set(parsed) <= set(SUPPORTED)
        assert digests.parse_repr_digest(digests.format_repr_digest(parsed)) == parsed


@FUZZ
@given(st.dictionaries(ALGORITHM_NAMES, st.just(b"")).flatmap(
    lambda names: st.fixed_dictionaries({name: digest_of(name) for name in names})
).filter(bool))  # fmt: skip
def test_repr_digest_round_trips(values: dict[str, bytes]) -> None:
    assert digests.parse_repr_digest(digests.format_repr_digest(values)) == values
    assert digests.decode_map(digests.encode_map(values)) == values


@FUZZ
@given(OPTIONAL_TEXT | CHECKSUM_HEADERS, OPTIONAL_TEXT | REPR_DIGEST_HEADERS)
def test_declared_digests_returns_digests_or_400(metadata_checksum: str | None, repr_digest: str | None) -> None:
    declared = call(digests.declared_digests, metadata_checksum, repr_digest, codes=DIGEST_CODES)
    if declared is not None:
        assert set(declared) <= set(SUPPORTED)


@FUZZ
@given(OPTIONAL_TEXT | WANT_DIGEST_HEADERS)
def test_parse_want_repr_digest_never_raises(header: str | None) -> None:
    # A preference we cannot read is no preference: HEAD and GET must still answer 200.
    wanted = digests.parse_want_repr_digest(header)
    assert set(wanted) <= set(SUPPORTED)


@FUZZ
@given(st.dictionaries(ALGORITHM_NAMES, st.integers(0, 10), min_size=1))
def test_want_repr_digest_orders_by_weight(weights: dict[str, int]) -> None:
    header = ", ".join(f"{HTTP_NAMES[name]}={weight}" for name, weight in weights.items())
    wanted = digests.parse_want_repr_digest(header)
    assert set(wanted) == {name for name, weight in weights.items() if weight > 0}
    assert [weights[name] for name in wanted] == sorted((weights[name] for name in wanted), reverse=True)


@FUZZ
@given(st.none() | st.dictionaries(ANY_TEXT, ANY_TEXT | st.integers()) | ANY_TEXT | st.lists(st.integers()))
def test_decode_map_raises_only_value_error(document: object) -> None:
    try:
        decoded = digests.decode_map(document)
    except ValueError:
        return
    assert set(decoded) <= set(SUPPORTED)


# --- urls: Location from Host and forwarded headers -------------------------------------------


@FUZZ
@given(
    st.sampled_from(["http", "https"]),
    ANY_TEXT,
    st.fixed_dictionaries(
        {},
        optional={
            "forwarded": FORWARDED_HEADERS | ANY_TEXT,
            "x-forwarded-host": ANY_TEXT,
            "x-forwarded-proto": ANY_TEXT | st.sampled_from(["https", "HTTP, https"]),
        },
    ),
    st.booleans(),
)
def test_host_and_scheme_never_raises(scheme: str, host: str, headers: dict[str, str], behind_proxy: bool) -> None:
    new_host, new_scheme = urls.host_and_scheme(scheme, host, headers, behind_proxy)
    assert new_scheme in ("http", "https")
    assert not new_host.endswith({"http": ":80", "https": ":443"}[new_scheme])
    if not behind_proxy:
        assert new_scheme == scheme
        assert host.startswith(new_host)
    if new_host != host.removesuffix({"http": ":80", "https": ":443"}[scheme]) and new_host:
        # A forwarded host is used only when it is a plausible host[:port].
        assert "/" not in new_host and "?" not in new_host and "#" not in new_host and " " not in new_host


@FUZZ
@given(
    st.sampled_from(["http", "https"]),
    st.sampled_from(["127.0.0.1:1080", "example.com", "[::1]:8080", "a.example:443", "b.example:80"]),
    st.sampled_from(["/files/", "/", "/api/v1/uploads/"]),
    UPLOAD_IDS,
)
def test_upload_url_round_trips_through_concat(scheme: str, host: str, base_path: str, upload_id: str) -> None:
    host, scheme = urls.host_and_scheme(scheme, host, {}, False)
    url = urls.upload_url(scheme, host, base_path, upload_id)
    assert protocol.upload_id_from_url(url, base_path) == upload_id


# --- download: Range, If-None-Match, Content-Type / Content-Disposition from metadata -----------


def selected_bytes(header: str, size: int) -> list[tuple[int, int]]:
    """What a well-formed `bytes=` set selects in a representation of `size` bytes (RFC 9110
    14.1.2): (first, last) of each satisfiable range, in order."""
    selected = []
    for spec in header.removeprefix("bytes=").split(","):
        first, _, last = spec.strip().partition("-")
        if first and int(first) < size:
            selected.append((int(first), min(int(last), size - 1) if last else size - 1))
        elif not first and int(last) > 0 and size > 0:
            selected.append((max(0, size - int(last)), size - 1))
    return selected


@FUZZ
@given(ANY_TEXT | RANGE_HEADERS, st.integers(0, 10**12))
def test_usable_range_never_raises(header: str, size: int) -> None:
    # What reaches Starlette's own Range parser is a plain bytes= set of short numbers.
    usable = download.usable_range(header, size)
    if usable is not None:
        assert re.fullmatch(r"bytes=[0-9]{0,19}-[0-9]{0,19}(,[0-9]{0,19}-[0-9]{0,19})*", usable), usable[:200]


# Digit strings, some far past int64 and past what int() takes (4300 digits).
RANGE_NUMBERS = st.integers(0, 3000).map(str) | st.sampled_from(["1" + "0" * 18, str(2**63 - 1), "9" * 30, "9" * 5000])


def _as_number(digits: str) -> tuple[int, str]:  # orders digit strings without int()
    return len(digits), digits


@FUZZ
@given(
    st.lists(
        st.tuples(st.none() | RANGE_NUMBERS, st.none() | RANGE_NUMBERS).filter(lambda p: p != (None, None)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2000),
)
def test_usable_range_selects_the_same_bytes(pairs: list[tuple[str | None, str | None]], size: int) -> None:
    # A well-formed set (any numbers, however large) keeps its meaning: the satisfiable ranges
    # select the same bytes in the same order; with none satisfiable the answer is 416.
    specs = []
    for first, last in pairs:
        if first is not None and last is not None:
            first, last = sorted((first, last), key=_as_number)
        specs.append(f"{first or ''}-{last or ''}")
    usable = download.usable_range("bytes=" + ", ".join(specs), size)
    assert usable is not None
    # The reference reads numbers past 19 digits as 10**19: beyond any size here, same meaning.
    capped = "bytes=" + ",".join(re.sub(r"[0-9]{20,}", str(10**19), spec) for spec in specs)
    assert selected_bytes(usable, size) == selected_bytes(capped, size)


@FUZZ
@given(OPTIONAL_TEXT, st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.booleans())
def test_none_match_is_a_plain_predicate(header: str | None, size: int, mtime_ns: int, local: bool) -> None:
    # The ETag of stored bytes: from a local file's stat, or (no local file) the modification time.
    stat = os.stat_result((0o100644, 1, 1, 1, 0, 0, size, 0, 0, 0), {"st_mtime_ns": mtime_ns}) if local else None
    tag = download.etag(StoredBytes(size=size, modified=mtime_ns / 1e9, local_stat=stat))
    assert isinstance(download.none_match(header, tag), bool)
    assert download.none_match(f"W/{tag}, {tag}", tag) and download.none_match(" * ", tag)


@FUZZ
@given(st.none() | ANY_TEXT | METADATA_VALUES, st.none() | METADATA_VALUES | HEADER_TEXT)
def test_download_headers_from_metadata_are_safe(filetype: str | None, filename: str | None) -> None:
    media = download.media_type(filetype)
    assert re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", media), media
    disposition = download.content_disposition(media, filename)
    # A header value: latin-1 (in fact ASCII), no control characters, one quoted name without path.
    assert disposition.isascii() and not re.search(r"[\x00-\x1f\x7f]", disposition), disposition
    assert disposition.split(";")[0] in ("inline", "attachment")
    if "filename=" in disposition:
        quoted = disposition.split('filename="', 1)[1].split('"', 1)[0]
        assert "/" not in quoted and "\\" not in quoted
