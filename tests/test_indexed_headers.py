"""asgi.IndexedHeaders answers lookups exactly as Starlette's Headers does, only from a dict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from tusd_py.asgi import IndexedHeaders

NAMES = st.sampled_from([b"upload-length", b"upload-offset", b"tus-resumable", b"x-a", b"content-type"])
VALUES = st.binary(max_size=8).map(lambda raw: raw.decode("latin-1").encode("latin-1"))
LOOKUPS = ["Upload-Length", "upload-offset", "TUS-RESUMABLE", "x-a", "content-type", "absent"]


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_lookups_match_starlette_headers(raw: list[tuple[bytes, bytes]]) -> None:
    indexed, plain = IndexedHeaders({"headers": list(raw)}), Headers(raw=list(raw))
    for key in LOOKUPS:
        assert indexed.get(key) == plain.get(key)  # the first of repeated headers wins in both
        assert indexed.get(key, "default") == plain.get(key, "default")
        assert (key in indexed) == (key in plain)
        assert indexed.getlist(key) == plain.getlist(key)
    assert indexed.items() == plain.items()
    assert 42 not in indexed
