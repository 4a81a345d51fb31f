"""Pure tests of `tusd_py/digests.py` (whole-file digest declarations, RFC 9530 fields)
and `tusd_py/download.py` (download headers). No server, no I/O.

Decided behaviour: spec_notes/whole-file-checksum.md and spec_notes/downloads.md.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py import digests, download
from tusd_py.errors import TusError
from tusd_py.stores import StoredBytes

HELLO = b'{"hello": "world"}'  # the RFC 9530 example content
HELLO_SHA256_B64 = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="
HELLO_SHA512_B64 = "WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew=="
ALGORITHMS = ["md5", "sha1", "sha256", "sha512"]
HTTP_NAMES = {"md5": "md5", "sha1": "sha", "sha256": "sha-256", "sha512": "sha-512"}


def raw(algorithm: str, data: bytes = HELLO) -> bytes:
    return hashlib.new(algorithm, data).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_refused(call, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TusError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code)


# --- metadata `checksum`: `<algo> <hex or base64>` ------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda d: d.hex(), id="hex-lower"),
        pytest.param(lambda d: d.hex().upper(), id="hex-upper"),
        pytest.param(b64, id="base64"),
    ],
)
def test_metadata_checksum_accepts_each_algorithm_as_hex_or_base64(algorithm: str, encode) -> None:  # type: ignore[no-untyped-def]
    digest = raw(algorithm)
    assert digests.parse_metadata_checksum(f"{algorithm} {encode(digest)}") == (algorithm, digest)


@pytest.mark.parametrize(
    "spelling, algorithm",
    [
        ("SHA256", "sha256"),
        ("Sha256", "sha256"),
        ("SHA-256", "sha256"),
        ("sha-512", "sha512"),
        ("MD5", "md5"),
        ("SHA1", "sha1"),
        ("Sha-1", "sha1"),
    ],
)
def test_metadata_checksum_algorithm_is_case_insensitive_and_tolerates_a_dash(spelling: str, algorithm: str) -> None:
    digest = raw(algorithm)
    assert digests.parse_metadata_checksum(f"{spelling} {digest.hex()}") == (algorithm, digest)


def test_metadata_checksum_tolerates_surrounding_whitespace() -> None:
    digest = raw("sha256")
    assert digests.parse_metadata_checksum(f"  sha256   {digest.hex()} ") == ("sha256", digest)


@pytest.mark.parametrize(
    "value, status, code",
    [
        # wrong lengths, as hex and as base64
        ("md5 " + "ab" * 15, 400, "ERR_INVALID_DIGEST"),
        ("md5 " + "ab" * 17, 400, "ERR_INVALID_DIGEST"),
        ("md5 " + "a" * 31, 400, "ERR_INVALID_DIGEST"),
        ("sha256 " + raw("sha1").hex(), 400, "ERR_INVALID_DIGEST"),
        ("sha256 " + b64(raw("sha1")), 400, "ERR_INVALID_DIGEST"),
        ("sha512 " + raw("sha256").hex(), 400, "ERR_INVALID_DIGEST"),
        ("sha1 " + b64(raw("sha512")), 400, "ERR_INVALID_DIGEST"),
        # garbage
        ("", 400, "ERR_INVALID_DIGEST"),
        ("   ", 400, "ERR_INVALID_DIGEST"),
        ("sha256", 400, "ERR_INVALID_DIGEST"),
        ("sha256 " + "zz" * 32, 400, "ERR_INVALID_DIGEST"),
        ("sha256 " + b64(raw("sha256"))[:-1], 400, "ERR_INVALID_DIGEST"),  # padding cut off
        ("sha256 " + raw("sha256").hex() + " extra", 400, "ERR_INVALID_DIGEST"),
        ("sha256:" + raw("sha256").hex(), 400, "ERR_INVALID_DIGEST"),
        ("sha256 ✓✓✓✓", 400, "ERR_INVALID_DIGEST"),
        # algorithms we do not support
        ("crc32 deadbeef", 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("sha3-256 " + hashlib.sha3_256(HELLO).hexdigest(), 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("blake2b " + "00" * 64, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("sha_256 " + raw("sha256").hex(), 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
    ],
)
def test_metadata_checksum_refuses_bad_values(value: str, status: int, code: str) -> None:
    assert_refused(lambda: digests.parse_metadata_checksum(value), status, code)


# --- Repr-Digest (RFC 9530) -------------------------------------------------------------------


def test_repr_digest_rfc9530_example() -> None:
    # RFC 9530 section 3: the sha-256 of `{"hello": "world"}`.
    assert digests.parse_repr_digest(f"sha-256=:{HELLO_SHA256_B64}:") == {"sha256": raw("sha256")}


def test_repr_digest_several_members() -> None:
    header = f"sha-256=:{HELLO_SHA256_B64}:, sha-512=:{HELLO_SHA512_B64}:"
    assert digests.parse_repr_digest(header) == {"sha256": raw("sha256"), "sha512": raw("sha512")}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_repr_digest_each_iana_name(algorithm: str) -> None:
    header = f"{HTTP_NAMES[algorithm]}=:{b64(raw(algorithm))}:"
    assert digests.parse_repr_digest(header) == {algorithm: raw(algorithm)}


@pytest.mark.parametrize(
    "header",
    [
        f"sha-256=:{HELLO_SHA256_B64}:;foo=bar",
        f"sha-256=:{HELLO_SHA256_B64}:; foo=1; bar",
        f'sha-256=:{HELLO_SHA256_B64}:;foo="baz"',
        f"  sha-256=:{HELLO_SHA256_B64}:  ",
    ],
)
def test_repr_digest_parameters_and_whitespace_are_ignored(header: str) -> None:
    assert digests.parse_repr_digest(header) == {"sha256": raw("sha256")}


def test_repr_digest_unknown_algorithms_are_ignored() -> None:
    # RFC 9530 section 2: unknown algorithms are ignored.
    header = f"sha3-256=:{b64(hashlib.sha3_256(HELLO).digest())}:, sha-256=:{HELLO_SHA256_B64}:, unixsum=:AAAA:"
    assert digests.parse_repr_digest(header) == {"sha256": raw("sha256")}


@pytest.mark.parametrize("header", ["sha3-256=:AAAA:", "unixsum=:AAAA:, id-sha-256=:AAAA:"])
def test_repr_digest_with_only_unknown_algorithms_is_refused(header: str) -> None:
    assert_refused(lambda: digests.parse_repr_digest(header), 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sha-256",  # a bare key (boolean true) is not a digest
        f"sha-256={HELLO_SHA256_B64}",  # not a byte sequence
        f"sha-256=:{HELLO_SHA256_B64}",
        f"sha-256={HELLO_SHA256_B64}:",
        "sha-256=::",
        "sha-256=:not base64!:",
        f"sha-256=:{HELLO_SHA256_B64[:-1]}:",
        f"sha-256=:{b64(raw('sha1'))}:",  # wrong length
        f"sha-512=:{HELLO_SHA256_B64}:",  # wrong length
        f"SHA-256=:{HELLO_SHA256_B64}:",  # structured-field keys are lowercase
        f"sha-256=:{HELLO_SHA256_B64}:,",
        f", sha-256=:{HELLO_SHA256_B64}:",
        f"sha-256 :{HELLO_SHA256_B64}:",
        "garbage",
    ],
)
def test_repr_digest_malformed_is_refused(header: str) -> None:
    assert_refused(lambda: digests.parse_repr_digest(header), 400, "ERR_INVALID_DIGEST")


# --- both declaration forms ------------------------------------------------------------------


def test_declared_digests_none() -> None:
    assert digests.declared_digests(None, None) == {}


def test_declared_digests_both_forms_agreeing() -> None:
    declared = digests.declared_digests(f"sha256 {raw('sha256').hex()}", f"sha-256=:{HELLO_SHA256_B64}:")
    assert declared == {"sha256": raw("sha256")}


def test_declared_digests_both_forms_different_algorithms_are_all_kept() -> None:
    declared = digests.declared_digests(f"md5 {raw('md5').hex()}", f"sha-512=:{HELLO_SHA512_B64}:")
    assert declared == {"md5": raw("md5"), "sha512": raw("sha512")}


def test_declared_digests_both_forms_disagreeing_is_refused() -> None:
    other = hashlib.sha256(b"something else").hexdigest()
    assert_refused(
        lambda: digests.declared_digests(f"sha256 {other}", f"sha-256=:{HELLO_SHA256_B64}:"), 400, "ERR_INVALID_DIGEST"
    )


@pytest.mark.parametrize(
    "checksum, repr_digest, code",
    [
        ("sha256 nope", None, "ERR_INVALID_DIGEST"),
        ("crc32 00000000", None, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        (None, "sha-256=nope", "ERR_INVALID_DIGEST"),
        (None, "sha3-256=:AAAA:", "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
    ],
)
def test_declared_digests_propagates_either_forms_refusal(
    checksum: str | None, repr_digest: str | None, code: str
) -> None:
    assert_refused(lambda: digests.declared_digests(checksum, repr_digest), 400, code)


# --- Want-Repr-Digest --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, wanted",
    [
        (None, []),
        ("sha-512=10, sha-256=1", ["sha512", "sha256"]),
        ("sha-256=1, sha-512=10", ["sha512", "sha256"]),
        ("sha-256=3, md5=5, sha=4", ["md5", "sha1", "sha256"]),
        ("sha-256=2, sha-512=2", ["sha256", "sha512"]),  # a tie keeps the header's order
        ("sha-512=0, sha-256=1", ["sha256"]),  # weight 0: not acceptable
        ("sha-512=0", []),
        ("sha3-256=10, sha-256=1", ["sha256"]),  # unknown algorithms are skipped
        ("unixsum=10", []),
        ("sha-256=11", []),  # weights are 0..10
        ("sha-256=1;q=2", ["sha256"]),
        ("", []),
        ("garbage", []),
        ("sha-256", []),
        ("sha-256=high", []),
        ("sha-256=-1", []),
        ("SHA-256=5", []),
        ("sha-256=1,,", []),
    ],
)
def test_want_repr_digest_weights_and_order(header: str | None, wanted: list[str]) -> None:
    assert digests.parse_want_repr_digest(header) == wanted


# --- formatting and the .info codec ----------------------------------------------------------


def test_format_repr_digest_single() -> None:
    assert digests.format_repr_digest({"sha256": raw("sha256")}) == f"sha-256=:{HELLO_SHA256_B64}:"


def test_format_repr_digest_several_round_trips() -> None:
    computed = {name: raw(name) for name in ALGORITHMS}
    formatted = digests.format_repr_digest(computed)
    assert formatted == ", ".join(f"{HTTP_NAMES[name]}=:{b64(raw(name))}:" for name in ALGORITHMS)
    assert digests.parse_repr_digest(formatted) == computed


def test_encode_map_and_decode_map_round_trip() -> None:
    computed = {name: raw(name) for name in ALGORITHMS}
    encoded = digests.encode_map(computed)
    assert encoded == {name: b64(raw(name)) for name in ALGORITHMS}
    assert digests.decode_map(encoded) == computed


def test_decode_map_none_is_empty_and_unknown_algorithms_are_dropped() -> None:
    assert digests.decode_map(None) == {}
    assert digests.decode_map({"sha256": HELLO_SHA256_B64, "sha3-256": "AAAA"}) == {"sha256": raw("sha256")}


@pytest.mark.parametrize("document", [[], "sha256", 5, {"sha256": "not base64!"}])
def test_decode_map_refuses_malformed_documents(document: object) -> None:
    with pytest.raises(ValueError):
        digests.decode_map(document)


# --- download: Content-Type ------------------------------------------------------------------


@pytest.mark.parametrize(
    "filetype, expected",
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        (" text/plain ", "text/plain"),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("image/svg+xml", "image/svg+xml"),
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text/html<script>", "application/octet-stream"),
        ("text/html\r\nX-Evil: 1", "application/octet-stream"),
        ("text", "application/octet-stream"),
        ("text/", "application/octet-stream"),
        ("/plain", "application/octet-stream"),
        ("text/plain/extra", "application/octet-stream"),
        ("text/plain; charset=utf-8", "application/octet-stream"),
        ("text/pläin", "application/octet-stream"),
    ],
)
def test_media_type_only_plain_media_types_pass(filetype: str | None, expected: str) -> None:
    assert download.media_type(filetype) == expected


# --- download: file names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("/absolute/path.txt", "path.txt"),
        ("C:\\Users\\me\\doc.txt", "doc.txt"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("dir/", ""),
        ("..", ".."),  # a bare `..` is not a path; it is quoted harmlessly (no separator survives)
        ("a\r\nb.txt", "ab.txt"),
        ("tab\there", "tabhere"),
        ("nul\x00byte", "nulbyte"),
        ("  spaced.txt  ", "spaced.txt"),
        ("", ""),
    ],
)
def test_safe_filename_keeps_the_last_component_without_controls(name: str, expected: str) -> None:
    assert download.safe_filename(name) == expected


ATTR_CHARS = re.compile(r"(?:[A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-F]{2})+")  # RFC 8187 value-chars
HEADER = re.compile(r'(inline|attachment)(?:; filename="([^"\\\x00-\x1f\x7f]*)"(?:; filename\*=UTF-8\'\'(.*))?)?')


def parse_disposition(header: str) -> tuple[str, str | None, str | None]:
    match = HEADER.fullmatch(header)
    assert match is not None, header
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize(
    "media, disposition",
    [
        ("text/plain", "inline"),
        ("image/png", "inline"),
        ("image/jpeg", "inline"),
        ("image/gif", "inline"),
        ("audio/ogg", "inline"),
        ("video/mp4", "inline"),
        ("application/ogg", "inline"),
        ("text/html", "attachment"),
        ("image/svg+xml", "attachment"),  # scriptable
        ("application/javascript", "attachment"),
        ("application/pdf", "attachment"),
        ("application/octet-stream", "attachment"),
    ],
)
def test_content_disposition_inline_only_for_the_allow_list(media: str, disposition: str) -> None:
    assert download.content_disposition(media, "f.bin") == f'{disposition}; filename="f.bin"'
    assert download.content_disposition(media, None) == disposition
    assert download.content_disposition(media, "") == disposition


@pytest.mark.parametrize(
    "name, ascii_name",
    [
        ('say "hi".txt', "say _hi_.txt"),
        ("back\\slash.txt", "slash.txt"),
        ("100%.txt", "100_.txt"),
        ("%22.txt", "_22.txt"),
        ("../../etc/passwd", "passwd"),
        ("evil\r\nSet-Cookie: a=b.txt", "evilSet-Cookie: a=b.txt"),
        ("résumé.pdf", "r_sum_.pdf"),
        ("日本語.txt", "___.txt"),
        ("emoji 🎉.png", "emoji _.png"),
        ("what?.txt", "what_.txt"),
    ],
)
def test_content_disposition_hostile_names(name: str, ascii_name: str) -> None:
    header = download.content_disposition("application/octet-stream", name)
    disposition, quoted, extended = parse_disposition(header)
    assert disposition == "attachment"
    assert quoted == ascii_name
    safe = download.safe_filename(name)
    if ascii_name == safe:
        assert extended is None
    else:  # RFC 8187: the real name, UTF-8 and percent-encoded
        assert extended is not None and ATTR_CHARS.fullmatch(extended), header
        assert unquote(extended, errors="strict") == safe


def test_content_disposition_non_ascii_is_percent_encoded_utf8() -> None:
    header = download.content_disposition("image/png", "résumé ✓.png")
    assert header == "inline; filename=\"r_sum_ _.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%9C%93.png"


def test_content_disposition_name_that_is_only_a_path_has_no_filename() -> None:
    assert download.content_disposition("text/plain", "../") == "inline"
    assert download.content_disposition("text/plain", "\r\n") == "inline"


def test_content_disposition_of_invalid_utf8_name_does_not_raise() -> None:
    # Metadata values are arbitrary bytes, kept as surrogate escapes (protocol._decode_value).
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    header = download.content_disposition("text/plain", name)
    disposition, quoted, extended = parse_disposition(header)
    assert disposition == "inline" and quoted == "caf_.txt"
    assert extended is None or ATTR_CHARS.fullmatch(extended)


# Names as metadata can carry them: any text, or any bytes decoded with surrogateescape.
NAMES = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))


@given(NAMES, st.sampled_from(["image/png", "text/html", "application/octet-stream"]))
def test_content_disposition_is_always_one_safe_header_line(name: str, media: str) -> None:
    header = download.content_disposition(media, name)
    assert "\r" not in header and "\n" not in header
    assert header.isascii() and header.isprintable()
    disposition, quoted, extended = parse_disposition(header)  # no unescaped `"` inside the quotes
    assert disposition == ("inline" if media == "image/png" else "attachment")
    if quoted is not None:
        assert "/" not in quoted and "\\" not in quoted and "%" not in quoted
    if extended is not None:
        assert ATTR_CHARS.fullmatch(extended), header


# --- download: ETag and If-None-Match ---------------------------------------------------------------


def local_file(size: int, mtime_ns: int) -> StoredBytes:
    """What the file store gives a download: the file's size and stat, as os.stat reports them."""
    stat = os.stat_result(
        (0o100644, 1, 1, 1, 0, 0, size, 0, mtime_ns // 10**9, 0), {"st_mtime": mtime_ns / 1e9, "st_mtime_ns": mtime_ns}
    )
    return StoredBytes(size=size, modified=stat.st_mtime, local_path="/uploads/x", local_stat=stat)


def test_etag_of_a_local_file_is_quoted_hex_size_and_mtime_in_ns() -> None:
    mtime_ns = 1_700_000_000_123_456_789  # more precision than the float st_mtime holds
    assert download.etag(local_file(18, mtime_ns)) == f'"12-{mtime_ns:x}"'


def test_etag_without_a_local_file_uses_the_modification_time() -> None:
    stored = StoredBytes(size=18, modified=1_700_000_000.5)  # e.g. S3: no local file, no stat
    assert download.etag(stored) == f'"12-{1_700_000_000_500_000_000:x}"'


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_etag_is_a_strong_validator_of_size_and_mtime(size: int, mtime_ns: int, other_size: int, other_ns: int) -> None:
    tag = download.etag(local_file(size, mtime_ns))
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', tag)  # strong (no W/), only etagc characters
    assert download.etag(local_file(size, mtime_ns)) == tag  # stable for unchanged bytes
    other = download.etag(local_file(other_size, other_ns))
    assert (other == tag) is ((other_size, other_ns) == (size, mtime_ns))  # any change, another tag
    assert download.none_match(tag, tag)
    assert download.none_match(other, tag) is (other == tag)


TAG = '"abc"'


@pytest.mark.parametrize(
    "header, matches",
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),  # weak comparison (RFC 9110 13.1.2)
        ('"xyz", "abc"', True),
        ('"xyz",W/"abc"', True),
        ("*", True),
        (" * ", True),
        ('"xyz"', False),
        ("abc", False),
        ('"ABC"', False),
        ("", False),
    ],
)
def test_none_match(header: str | None, matches: bool) -> None:
    assert download.none_match(header, TAG) is matches
