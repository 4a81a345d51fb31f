"""Upload URLs behind a proxy: `-behind-proxy` and `-base-path`.

tusd (`getHostAndProtocol` in pkg/handler/unrouted_handler.go): the request's
own Host and scheme, unless `-behind-proxy`; then X-Forwarded-Host, then
X-Forwarded-Proto (only `http`/`https`), then Forwarded `host=`/`proto=`,
which win. A default port (`:80` for http, `:443` for https) is dropped.
The same URLs appear in Location and in a final upload's HEAD Upload-Concat.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

ID = r"[0-9a-f]{32}"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(tmp_path_factory.mktemp("proxied") / "uploads", "-behind-proxy")
    yield srv
    srv.stop()


def location(client: httpx.Client, server: TusServer, **headers: str) -> str:
    response = client.post(server.url, headers={**TUS, "Upload-Length": "1", **headers})
    assert response.status_code == 201, response.text
    return response.headers["location"]


def base_of(url: str) -> str:
    """The URL without its upload id."""
    prefix, _, upload_id = url.rpartition("/")
    assert len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id), url
    return prefix + "/"


FORWARDING_HEADERS = [
    {"X-Forwarded-Host": "files.example"},
    {"X-Forwarded-Proto": "https"},
    {"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "https"},
    {"Forwarded": "host=a.example;proto=https"},
    {"Forwarded": "for=192.0.2.1;host=a.example;proto=https", "X-Forwarded-Host": "b.example"},
]


@pytest.mark.parametrize("headers", FORWARDING_HEADERS)
def test_forwarding_headers_are_ignored_without_behind_proxy(
    server: TusServer, client: httpx.Client, headers: dict[str, str]
) -> None:
    # Location from the request itself: a client cannot point others elsewhere.
    assert base_of(location(client, server, **headers)) == server.url


def test_host_header_default_port_is_dropped_without_proxy(server: TusServer, client: httpx.Client) -> None:
    assert base_of(location(client, server, Host="uploads.example:80")) == "http://uploads.example/files/"
    assert base_of(location(client, server, Host="uploads.example:8080")) == "http://uploads.example:8080/files/"


@pytest.mark.parametrize(
    "headers, base",
    [
        ({}, None),  # nothing forwarded: the request's own host
        ({"X-Forwarded-Host": "files.example"}, "http://files.example/files/"),
        ({"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "https"}, "https://files.example/files/"),
        ({"X-Forwarded-Proto": "https"}, "https://{host}/files/"),
        ({"X-Forwarded-Host": "files.example:8443", "X-Forwarded-Proto": "https"}, "https://files.example:8443/files/"),
        # Forwarded wins over X-Forwarded-*.
        (
            {"Forwarded": "host=a.example;proto=https", "X-Forwarded-Host": "b.example", "X-Forwarded-Proto": "http"},
            "https://a.example/files/",
        ),
        ({"Forwarded": "for=192.0.2.1;host=a.example;proto=https"}, "https://a.example/files/"),
        ({"Forwarded": 'host="a.example:8443";proto=https'}, "https://a.example:8443/files/"),
        ({"Forwarded": "proto=https", "X-Forwarded-Host": "b.example"}, "https://b.example/files/"),
        ({"Forwarded": "host=a.example", "X-Forwarded-Proto": "https"}, "https://a.example/files/"),
    ],
)
def test_behind_proxy_location_follows_forwarding_headers(
    proxied: TusServer, client: httpx.Client, headers: dict[str, str], base: str | None
) -> None:
    host = proxied.url.split("/")[2]
    expected = proxied.url if base is None else base.format(host=host)
    assert base_of(location(client, proxied, **headers)) == expected


@pytest.mark.parametrize(
    "headers, base",
    [
        ({"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "ftp"}, "http://files.example/files/"),
        ({"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "javascript"}, "http://files.example/files/"),
        # An unusable Forwarded proto is ignored, so X-Forwarded-Proto still counts.
        (
            {"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "https", "Forwarded": "proto=ftp"},
            "https://files.example/files/",
        ),
    ],
)
def test_proto_other_than_http_or_https_is_ignored(
    proxied: TusServer, client: httpx.Client, headers: dict[str, str], base: str
) -> None:
    assert base_of(location(client, proxied, **headers)) == base


@pytest.mark.parametrize(
    "host, proto, base",
    [
        ("files.example:443", "https", "https://files.example/files/"),
        ("files.example:80", "http", "http://files.example/files/"),
        ("files.example:443", "http", "http://files.example:443/files/"),
        ("files.example:80", "https", "https://files.example:80/files/"),
        ("files.example:8080", "http", "http://files.example:8080/files/"),
        ("files.example:4430", "https", "https://files.example:4430/files/"),
        ("[2001:db8::1]:443", "https", "https://[2001:db8::1]/files/"),
    ],
)
def test_default_port_is_stripped_only_for_its_scheme(
    proxied: TusServer, client: httpx.Client, host: str, proto: str, base: str
) -> None:
    assert base_of(location(client, proxied, **{"X-Forwarded-Host": host, "X-Forwarded-Proto": proto})) == base
    assert base_of(location(client, proxied, Forwarded=f'host="{host}";proto={proto}')) == base


def test_final_upload_concat_urls_follow_the_same_rules(proxied: TusServer, client: httpx.Client) -> None:
    # T-CON-15, T-CRE-8: HEAD of a final upload lists its partials as absolute URLs.
    partials = []
    for data in (b"abc", b"de"):
        url = create(client, proxied, len(data), **{"Upload-Concat": "partial"})
        assert patch(client, url, 0, data).status_code == 204
        partials.append(url.rsplit("/", 1)[1])
    response = client.post(
        proxied.url,
        headers={**TUS, "Upload-Concat": "final;" + " ".join(f"/files/{p}" for p in partials)},
    )
    assert response.status_code == 201
    final = response.headers["location"]

    plain = head(client, final)
    assert plain.headers["upload-concat"] == "final;" + " ".join(proxied.url + p for p in partials)

    forwarded = client.head(
        final, headers={**TUS, "Forwarded": "host=a.example:443;proto=https", "X-Forwarded-Host": "b.example"}
    )
    assert forwarded.status_code == 200
    assert forwarded.headers["upload-concat"] == "final;" + " ".join(f"https://a.example/files/{p}" for p in partials)

    x_forwarded = client.head(final, headers={**TUS, "X-Forwarded-Host": "b.example:80", "X-Forwarded-Proto": "http"})
    assert x_forwarded.headers["upload-concat"] == "final;" + " ".join(f"http://b.example/files/{p}" for p in partials)


def test_final_upload_concat_urls_ignore_forwarding_without_behind_proxy(
    server: TusServer, client: httpx.Client
) -> None:
    partial = create(client, server, 1, **{"Upload-Concat": "partial"})
    assert patch(client, partial, 0, b"x").status_code == 204
    response = client.post(server.url, headers={**TUS, "Upload-Concat": f"final;{partial}"})
    assert response.status_code == 201
    final = response.headers["location"]
    forwarded = client.head(final, headers={**TUS, "Forwarded": "host=a.example;proto=https"})
    assert forwarded.headers["upload-concat"] == f"final;{partial}"


# --- -base-path --------------------------------------------------------------------------------------


@pytest.fixture
def prefixed(make_server) -> TusServer:
    return make_server("-base-path", "/some/prefix/uploads/", "-behind-proxy")


def test_base_path_create_patch_head_and_location(prefixed: TusServer, client: httpx.Client) -> None:
    assert prefixed.url.endswith("/some/prefix/uploads/")
    url = create(client, prefixed, 11)
    assert base_of(url) == prefixed.url
    assert patch(client, url, 0, b"hello ").status_code == 204
    response = patch(client, url, 6, b"world")
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "11"
    assert head(client, url).headers["upload-offset"] == "11"
    assert (prefixed.upload_dir / url.rsplit("/", 1)[1]).read_bytes() == b"hello world"
    # The old base path is not the upload collection any more.
    origin = "/".join(prefixed.url.split("/")[:3])
    assert client.post(origin + "/files/", headers={**TUS, "Upload-Length": "1"}).status_code != 201


def test_base_path_without_trailing_slash_creates_too(prefixed: TusServer, client: httpx.Client) -> None:
    response = client.post(prefixed.url.rstrip("/"), headers={**TUS, "Upload-Length": "1"})
    assert response.status_code == 201
    assert base_of(response.headers["location"]) == prefixed.url


def test_base_path_location_behind_proxy(prefixed: TusServer, client: httpx.Client) -> None:
    url = location(client, prefixed, **{"X-Forwarded-Host": "cdn.example:443", "X-Forwarded-Proto": "https"})
    assert base_of(url) == "https://cdn.example/some/prefix/uploads/"


def test_base_path_concat_urls(prefixed: TusServer, client: httpx.Client) -> None:
    partial = create(client, prefixed, 2, **{"Upload-Concat": "partial"})
    assert patch(client, partial, 0, b"ok").status_code == 204
    relative = "/some/prefix/uploads/" + partial.rsplit("/", 1)[1]
    response = client.post(prefixed.url, headers={**TUS, "Upload-Concat": f"final;{relative} {partial}"})
    assert response.status_code == 201
    final = head(client, response.headers["location"])
    assert final.headers["upload-length"] == "4"
    assert final.headers["upload-concat"] == f"final;{partial} {partial}"
    forwarded = client.head(response.headers["location"], headers={**TUS, "Forwarded": "host=cdn.example;proto=https"})
    partial_id = partial.rsplit("/", 1)[1]
    expected = f"https://cdn.example/some/prefix/uploads/{partial_id}"
    assert forwarded.headers["upload-concat"] == f"final;{expected} {expected}"
