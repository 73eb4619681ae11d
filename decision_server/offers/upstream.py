"""Reading an external catalog API over HTTP: pages, retries with backoff, size limits, shape checks."""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

MAX_PAGES = 1000
MAX_BYTES = 20 * 1024 * 1024
BACKOFF_SECONDS = 0.5  # the first retry waits 0.25-0.5 s, then twice as long each time
MAX_BACKOFF_SECONDS = 30.0
_CHUNK = 64 * 1024
_MISSING = object()


class FetchError(Exception):
    """The upstream failed or answered something we cannot use; the message is safe to store and show."""


@dataclasses.dataclass
class Source:
    """Where and how to read one catalog; `headers` may hold a secret and is kept out of repr."""

    url: str
    items_path: str
    next_path: str | None
    timeout: float
    retries: int
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    attempts: int = 0  # HTTP requests made so far, over every page
    pages: int = 0


def resolve(document: Any, path: str, default: Any = _MISSING) -> Any:
    """Return the value at a dotted path (`data.items`, `images.0.url`; "" is the document itself)."""
    node = document
    for part in path.split(".") if path else ():
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif default is _MISSING:
            raise KeyError(path)
        else:
            return default
    return node


def fetch_items(source: Source, *, sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Read every page of the catalog and return its items; raise FetchError when it cannot."""
    items: list[dict[str, Any]] = []
    url, seen, budget = source.url, set(), MAX_BYTES
    while url is not None:
        if source.pages >= MAX_PAGES:
            raise FetchError(f"more than {MAX_PAGES} pages; is the next link going round in circles?")
        seen.add(url)
        source.pages += 1
        body = _get(source, url, budget, sleep)
        budget -= len(body)
        document = _parse(body, source.pages)
        items.extend(_page_items(document, source.items_path, source.pages))
        url = _next_url(document, source, url, seen)
    return items


def _get(source: Source, url: str, budget: int, sleep: Callable[[float], None]) -> bytes:
    """GET one page, retrying what may pass (timeouts, lost connections, 5xx, 429) with backoff."""
    for attempt in range(source.retries + 1):
        source.attempts += 1
        try:
            return _request(source, url, budget)
        except _Transient as exc:
            if attempt == source.retries:
                tries = f"{source.retries + 1} attempts" if source.retries else "1 attempt"
                raise FetchError(f"page {source.pages}: {exc.reason} ({tries})") from None
            sleep(max(_backoff(attempt), exc.retry_after))
    raise AssertionError("unreachable")


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float = 0.0):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def _backoff(attempt: int) -> float:
    # Exponential, with jitter so that many servers syncing one upstream do not retry in step.
    ceiling = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would send our auth header on to wherever a redirect points, another host included.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _request(source: Source, url: str, budget: int) -> bytes:
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "decision-server catalog sync", **source.headers}
    )
    deadline = time.monotonic() + source.timeout
    try:
        with _opener.open(request, timeout=source.timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > budget:
                raise FetchError(f"page {source.pages} is {int(length):,} bytes; a sync reads at most {MAX_BYTES:,} in all")
            chunks, size = [], 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > budget:
                    raise FetchError(f"the catalog is larger than {MAX_BYTES:,} bytes in all; nothing was read")
                if time.monotonic() > deadline:
                    raise _Transient(f"timed out after {source.timeout:g} s reading the body")
                chunks.append(chunk)
            if length and length.isdigit() and size < int(length):
                # read(n) returns what came before the connection closed: do not parse half a page.
                raise _Transient(f"connection lost after {size:,} of {int(length):,} bytes")
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        exc.close()
        status = f"HTTP {exc.code} {exc.reason}".rstrip()
        if exc.code == 429 or exc.code >= 500:
            raise _Transient(status, _retry_after(exc.headers.get("Retry-After"))) from None
        if 300 <= exc.code < 400:
            raise FetchError(
                f"page {source.pages}: {status}, redirected to {exc.headers.get('Location')}; "
                "redirects are not followed: set the connector's url to the final address"
            ) from None
        raise FetchError(f"page {source.pages}: {status} (not retried)") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise FetchError(f"page {source.pages}: TLS certificate not trusted: {exc.reason.verify_message}") from None
        if isinstance(exc.reason, TimeoutError):
            raise _Transient(f"timed out after {source.timeout:g} s") from None
        raise _Transient(f"could not connect: {exc.reason}") from None
    except TimeoutError:
        raise _Transient(f"timed out after {source.timeout:g} s") from None
    except (http.client.HTTPException, OSError) as exc:  # a reset or cut-off connection mid-body
        raise _Transient(f"connection lost: {type(exc).__name__}") from None


def _retry_after(value: str | None) -> float:
    """Honour a Retry-After of seconds or an HTTP date, up to the longest backoff."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return min(float(value), MAX_BACKOFF_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, min(when.timestamp() - time.time(), MAX_BACKOFF_SECONDS))


def _parse(body: bytes, page: int) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        start = body[:40].decode("utf-8", "replace").strip()
        raise FetchError(f"page {page} is not JSON ({type(exc).__name__}: {exc}); it starts {start!r}") from None


def _page_items(document: Any, items_path: str, page: int) -> list[dict[str, Any]]:
    where = f"`{items_path}`" if items_path else "the body"
    try:
        items = resolve(document, items_path)
    except KeyError:
        raise FetchError(f"page {page} has no {where}: check the connector's items_path") from None
    if not isinstance(items, list):
        raise FetchError(f"page {page}: {where} is {_kind(items)}, not a list: check the connector's items_path")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise FetchError(f"page {page}: item {index} is {_kind(item)}, not an object")
    return items


def _next_url(document: Any, source: Source, current: str, seen: set[str]) -> str | None:
    if not source.next_path:
        return None
    link = resolve(document, source.next_path, None)
    if link is None or link == "":
        return None
    if not isinstance(link, str):
        raise FetchError(f"page {source.pages}: the next link `{source.next_path}` is {_kind(link)}, not a URL")
    url = urllib.parse.urljoin(current, link)
    # Our auth header goes with every page: never to another host than the one configured.
    if _origin(url) != _origin(source.url):
        raise FetchError(f"page {source.pages}: the next link leads to another site ({_origin(url)}); refused")
    if url in seen:
        raise FetchError(f"page {source.pages}: the next link repeats an earlier page ({url})")
    return url


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
