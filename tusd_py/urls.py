"""Absolute upload URLs, as tusd builds them (pure).

Scheme and host come from the request itself; with `-behind-proxy`, from
`Forwarded` (host=, proto=; it wins) or `X-Forwarded-Host`/`X-Forwarded-Proto`.
Only `http` and `https` are accepted as protocols, and default ports are
dropped (`:80` for http, `:443` for https), as tusd does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_HOST = re.compile(r"[A-Za-z0-9.\-_~%!$&'()*+,;=:\[\]]+")


def _forwarded_pairs(header: str) -> dict[str, str]:
    # Only the first (closest to the client) element of the list matters.
    pairs = {}
    for pair in header.split(",")[0].split(";"):
        key, _, value = pair.strip().partition("=")
        pairs[key.strip().lower()] = value.strip().strip('"')
    return pairs


def host_and_scheme(scheme: str, host: str, headers: Mapping[str, str], behind_proxy: bool) -> tuple[str, str]:
    if behind_proxy:
        forwarded = _forwarded_pairs(headers.get("forwarded", ""))
        # Later wins: Forwarded over X-Forwarded-Proto, each only when it is http or https.
        for proto in (headers.get("x-forwarded-proto", "").split(",")[0].strip(), forwarded.get("proto", "")):
            if proto.lower() in ("http", "https"):
                scheme = proto.lower()
        candidate = forwarded.get("host") or headers.get("x-forwarded-host", "").split(",")[0].strip()
        if candidate and _HOST.fullmatch(candidate):
            host = candidate
    default_port = {"http": ":80", "https": ":443"}[scheme] if scheme in ("http", "https") else ""
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    return host, scheme


def upload_url(scheme: str, host: str, base_path: str, upload_id: str) -> str:
    return f"{scheme}://{host}{base_path}{upload_id}"
