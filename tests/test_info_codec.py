"""The tusd `.info` JSON codec (tusd_py.info): a directory written by tusd is served by us and back."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tusd_py.info import UploadInfo, decode, encode

TUSD_FIELDS = {
    "ID",
    "Size",
    "SizeIsDeferred",
    "Offset",
    "MetaData",
    "IsPartial",
    "IsFinal",
    "PartialUploads",
    "Storage",
}

# Documents as tusd's filestore writes them (Go's encoding/json of handler.FileInfo: compact, fields in
# struct order, nil slices as null).
TUSD_PLAIN = (
    b'{"ID":"4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e","Size":11,"SizeIsDeferred":false,"Offset":0,'
    b'"MetaData":{"filename":"world_domination_plan.pdf","filetype":"application/pdf","is_confidential":""},'
    b'"IsPartial":false,"IsFinal":false,"PartialUploads":null,'
    b'"Storage":{"InfoPath":"/srv/tusd-data/4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e.info",'
    b'"Path":"/srv/tusd-data/4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e","Type":"filestore"}}'
)
TUSD_DEFERRED = (
    b'{"ID":"deferred0000000000000000000000","Size":0,"SizeIsDeferred":true,"Offset":0,"MetaData":{},'
    b'"IsPartial":false,"IsFinal":false,"PartialUploads":null,'
    b'"Storage":{"InfoPath":"/d/deferred0000000000000000000000.info","Path":"/d/deferred0000000000000000000000",'
    b'"Type":"filestore"}}'
)
TUSD_PARTIAL = (
    b'{"ID":"partial1","Size":5,"SizeIsDeferred":false,"Offset":0,"MetaData":{"part":"1"},'
    b'"IsPartial":true,"IsFinal":false,"PartialUploads":null,'
    b'"Storage":{"InfoPath":"/d/partial1.info","Path":"/d/partial1","Type":"filestore"}}'
)
TUSD_FINAL = (
    b'{"ID":"final1","Size":10,"SizeIsDeferred":false,"Offset":10,"MetaData":null,'
    b'"IsPartial":false,"IsFinal":true,"PartialUploads":["partial1","partial2","partial1"],'
    b'"Storage":{"InfoPath":"/d/final1.info","Path":"/d/final1","Type":"filestore"}}'
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            TUSD_PLAIN,
            UploadInfo(
                id="4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e",
                size=11,
                offset=0,
                metadata={
                    "filename": "world_domination_plan.pdf",
                    "filetype": "application/pdf",
                    "is_confidential": "",
                },
                storage={
                    "InfoPath": "/srv/tusd-data/4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e.info",
                    "Path": "/srv/tusd-data/4d5a2b2c9b5e4a3c8f1e0d2c3b4a5f6e",
                    "Type": "filestore",
                },
            ),
        ),
        (
            TUSD_DEFERRED,  # T-DEF-*: Size 0 + SizeIsDeferred true is an unknown length, not 0
            UploadInfo(
                id="deferred0000000000000000000000",
                size=None,
                storage={
                    "InfoPath": "/d/deferred0000000000000000000000.info",
                    "Path": "/d/deferred0000000000000000000000",
                    "Type": "filestore",
                },
            ),
        ),
        (
            TUSD_PARTIAL,
            UploadInfo(
                id="partial1",
                size=5,
                metadata={"part": "1"},
                is_partial=True,
                storage={"InfoPath": "/d/partial1.info", "Path": "/d/partial1", "Type": "filestore"},
            ),
        ),
        (
            TUSD_FINAL,  # MetaData null is an empty map; the same partial may repeat (T-CON-10)
            UploadInfo(
                id="final1",
                size=10,
                offset=10,
                is_final=True,
                partial_uploads=("partial1", "partial2", "partial1"),
                storage={"InfoPath": "/d/final1.info", "Path": "/d/final1", "Type": "filestore"},
            ),
        ),
    ],
    ids=["plain", "deferred", "partial", "final"],
)
def test_decode_reads_tusd_documents(raw: bytes, expected: UploadInfo) -> None:
    info = decode(raw)
    assert info == expected
    assert info.size_is_deferred is (expected.size is None)


def test_decode_of_tusd_deferred_document_is_not_complete() -> None:
    # Size 0 with SizeIsDeferred must not be taken for a complete empty upload.
    info = decode(TUSD_DEFERRED)
    assert info.size is None and info.size_is_deferred and not info.is_complete


def test_decode_ignores_unknown_fields() -> None:
    # As Go's encoding/json does; newer tusd versions may add fields.
    document = json.loads(TUSD_PLAIN)
    document.update({"CreatedAt": "2024-01-01T00:00:00Z", "Extra": {"nested": [1, 2]}, "size": 99})
    assert decode(json.dumps(document).encode()) == decode(TUSD_PLAIN)


def test_decode_tolerates_missing_optional_fields() -> None:
    # Go fills absent fields with zero values.
    assert decode(b'{"ID":"abc"}') == UploadInfo(id="abc", size=0)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{",
        b"\xff\xfe\x00garbage",
        b"null",
        b"[]",
        b'"ID"',
        b"42",
        b"{}",  # no ID
        b'{"ID":null}',
        b'{"ID":42}',
        b'{"ID":"abc","Size":"eleven"}',
        b'{"ID":"abc","Offset":"zero"}',
        b'{"ID":"abc","Size":null}',
        b'{"ID":"abc","Offset":[]}',
        b'{"ID":"abc","MetaData":["a","b"]}',
        b'{"ID":"abc","MetaData":"filename"}',
        b'{"ID":"abc","Storage":"filestore"}',
        b'{"ID":"abc","PartialUploads":7}',
    ],
)
def test_decode_rejects_garbage_with_value_error(raw: bytes) -> None:
    # The file store turns ValueError into "not found"/"corrupt"; any other exception would be a 500.
    with pytest.raises(ValueError):
        decode(raw)


def test_encode_writes_exactly_tusd_field_names() -> None:
    document = json.loads(encode(UploadInfo(id="abc", size=11)))
    assert set(document) == TUSD_FIELDS


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            UploadInfo(
                id="abc",
                size=11,
                offset=3,
                metadata={"filename": "a.txt", "empty": ""},
                storage={"Type": "filestore", "Path": "/d/abc", "InfoPath": "/d/abc.info"},
            ),
            {
                "ID": "abc",
                "Size": 11,
                "SizeIsDeferred": False,
                "Offset": 3,
                "MetaData": {"filename": "a.txt", "empty": ""},
                "IsPartial": False,
                "IsFinal": False,
                "PartialUploads": None,
                "Storage": {"Type": "filestore", "Path": "/d/abc", "InfoPath": "/d/abc.info"},
            },
        ),
        (
            UploadInfo(id="def", size=None),  # deferred: tusd writes Size 0
            {
                "ID": "def",
                "Size": 0,
                "SizeIsDeferred": True,
                "Offset": 0,
                "MetaData": {},
                "IsPartial": False,
                "IsFinal": False,
                "PartialUploads": None,
                "Storage": {},
            },
        ),
        (
            UploadInfo(id="p", size=5, is_partial=True),  # partial: PartialUploads null, as tusd
            {
                "ID": "p",
                "Size": 5,
                "SizeIsDeferred": False,
                "Offset": 0,
                "MetaData": {},
                "IsPartial": True,
                "IsFinal": False,
                "PartialUploads": None,
                "Storage": {},
            },
        ),
        (
            UploadInfo(id="f", size=10, offset=10, is_final=True, partial_uploads=("a", "b", "a")),
            {
                "ID": "f",
                "Size": 10,
                "SizeIsDeferred": False,
                "Offset": 10,
                "MetaData": {},
                "IsPartial": False,
                "IsFinal": True,
                "PartialUploads": ["a", "b", "a"],
                "Storage": {},
            },
        ),
    ],
    ids=["plain", "deferred", "partial", "final"],
)
def test_encode_documents(info: UploadInfo, expected: dict[str, object]) -> None:
    assert json.loads(encode(info)) == expected


@pytest.mark.parametrize(
    "info",
    [
        UploadInfo(id="abc", size=0),
        UploadInfo(id="abc", size=11, offset=11, metadata={"k": "v", "empty": "", "snow": "☃"}),
        UploadInfo(id="abc", size=11, metadata={"bin": "\udcff\udcfe"}),  # non-UTF-8 metadata bytes
        UploadInfo(id="abc", size=None, offset=4),
        UploadInfo(id="abc", size=5, is_partial=True),
        UploadInfo(id="abc", size=2**63 - 1, is_final=True, partial_uploads=("x", "y")),
        UploadInfo(id="abc", size=3, storage={"Type": "filestore", "Path": "/d/abc", "InfoPath": "/d/abc.info"}),
    ],
)
def test_encode_decode_round_trip(info: UploadInfo) -> None:
    assert decode(encode(info)) == info


@pytest.mark.parametrize("raw", [TUSD_PLAIN, TUSD_DEFERRED, TUSD_PARTIAL])
def test_tusd_document_survives_decode_encode(raw: bytes) -> None:
    # What we write back for a tusd upload is the same document, field for field.
    assert json.loads(encode(decode(raw))) == json.loads(raw)


def test_encode_is_utf8_json_bytes() -> None:
    raw = encode(UploadInfo(id="abc", size=1, metadata={"name": "héllo"}))
    assert isinstance(raw, bytes)
    assert json.loads(raw.decode("utf-8"))["MetaData"] == {"name": "héllo"}


def test_finished_flag_round_trips_and_makes_a_complete_upload_verified() -> None:
    md5 = {"md5": b"\x01" * 16}
    info = UploadInfo(id="done", size=3, offset=3, declared_digests=md5, digests=md5)
    assert not info.verified  # complete, but completion has not run
    finished = decode(encode(replace(info, finished=True)))
    assert finished.finished and finished.verified
    assert json.loads(encode(finished))["Finished"] is True
    assert "Finished" not in json.loads(encode(info))  # absent until completion ran, as tusd writes it


def test_older_info_with_digests_but_no_finished_flag_counts_as_finished() -> None:
    # Before the flag existed, completion always recorded a sha256 digest and nothing else marked it.
    document = {"ID": "old", "Size": 2, "Offset": 2, "Digests": {"sha256": "A" * 43 + "="}}
    info = decode(json.dumps(document).encode())
    assert info.finished and info.verified


def test_tusd_complete_upload_is_not_finished_until_loaded() -> None:
    document = {"ID": "tusd", "Size": 2, "Offset": 2, "Storage": {"Type": "filestore"}}
    assert not decode(json.dumps(document).encode()).verified
