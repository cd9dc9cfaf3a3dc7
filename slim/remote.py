"""Reports from a receiver (`snoop receive`), for `snoop report` and `snoop slim`.

A report argument that is an http(s) URL is fetched instead of read from disk:
`http://recv:8787?image=shop:1.2` (or `…/v1/report?image=…`) is the union of every
workload of that image the receiver knows, in the report format. `SNOOP_API_TOKEN` is
sent as the bearer token; TLS is verified against the system's CAs, or
`SNOOP_API_CA_FILE`. Every failure is one ReportError line naming the URL.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from snoop.common.report import Report, ReportError

REPORT_PATH = "/v1/report"
TIMEOUT = 60.0
MAX_REPLY = 1 << 30  # a union of 1M paths is a few hundred MB of JSON


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def api_url(base: str, path: str, **query: str) -> str:
    """`path` on the receiver at `base` (whose own path, if any, is replaced unless it
    already is `path`), with `query` added to the query `base` has."""
    parts = urlsplit(base)
    params = dict(parse_qsl(parts.query))
    params.update(query)
    return urlunsplit(parts._replace(path=path, query=urlencode(params)))


def report_url(spec: str) -> str:
    """The URL a report argument names: a bare receiver URL means its /v1/report."""
    parts = urlsplit(spec)
    if parts.path in ("", "/"):
        parts = parts._replace(path=REPORT_PATH)
    if parts.path == REPORT_PATH and "image" not in dict(parse_qsl(parts.query)):
        raise ReportError(f"{spec}: expected ?image=IMAGE (an image ref or digest)")
    return urlunsplit(parts)


def _client(environ: Mapping[str, str]) -> httpx.Client:
    headers = {"User-Agent": "snoop", "Accept": "application/json"}
    token = environ.get("SNOOP_API_TOKEN", "").strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ca_file = environ.get("SNOOP_API_CA_FILE", "").strip()
    verify: bool | ssl.SSLContext = True
    if ca_file:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ReportError(f"SNOOP_API_CA_FILE={ca_file!r}: {exc}") from None
    return httpx.Client(headers=headers, verify=verify, timeout=TIMEOUT,
                        follow_redirects=False)


def fetch_json(url: str, environ: Mapping[str, str]) -> Any:
    try:
        with _client(environ) as client, client.stream("GET", url) as reply:
            body = bytearray()
            for chunk in reply.iter_bytes():
                body += chunk
                if len(body) > MAX_REPLY:
                    raise ReportError(f"{url}: reply larger than {MAX_REPLY} bytes")
            status = reply.status_code
    except httpx.HTTPError as exc:
        raise ReportError(f"{url}: {exc.__class__.__name__}: {exc}") from None
    if status != 200:
        raise ReportError(f"{url}: HTTP {status}: {_error_text(bytes(body))}")
    try:
        return httpx.Response(200, content=bytes(body)).json()
    except ValueError as exc:
        raise ReportError(f"{url}: not JSON: {exc}") from None


def _error_text(body: bytes) -> str:
    try:
        error = httpx.Response(200, content=body).json().get("error")
    except (ValueError, AttributeError):
        error = None
    text = error if isinstance(error, str) else body.decode("utf-8", "replace")
    return " ".join(text.split())[:300] or "(no reason given)"


def fetch_report(spec: str, environ: Mapping[str, str]) -> Report:
    url = report_url(spec)
    try:
        return Report.from_json(fetch_json(url, environ))
    except ReportError as exc:
        if str(exc).startswith(url):
            raise
        raise ReportError(f"{url}: {exc}") from None


def image_report(base: str, image: str, environ: Mapping[str, str]) -> Report:
    return fetch_report(api_url(base, REPORT_PATH, image=image), environ)


def images(base: str, environ: Mapping[str, str]) -> list[dict[str, Any]]:
    url = api_url(base, "/v1/images")
    data = fetch_json(url, environ)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ReportError(f"{url}: expected an object with an 'images' list")
    return [i for i in data["images"] if isinstance(i, dict)]


def workloads(base: str, image: str, environ: Mapping[str, str]) -> list[dict[str, Any]]:
    url = api_url(base, "/v1/workloads", image=image)
    data = fetch_json(url, environ)
    if not isinstance(data, dict) or not isinstance(data.get("workloads"), list):
        raise ReportError(f"{url}: expected an object with a 'workloads' list")
    return [w for w in data["workloads"] if isinstance(w, dict)]
