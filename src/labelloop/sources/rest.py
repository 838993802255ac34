"""Rows from a paginated REST API (JSON), streamed page by page.

Pages are followed the ways APIs commonly paginate, the first that applies:

* an RFC 8288 ``Link: <...>; rel="next"`` header (GitHub, many others);
* a next link in the body: ``next``, ``next_url``, ``links.next`` or ``paging.next``
  (Django REST framework, JSON:API, Graph APIs);
* a cursor in the body (``next_cursor``, ``cursor`` or ``meta.next_cursor``) sent back as the
  ``cursor_param`` query parameter;
* with ``page_param`` set (``page``), page numbers from ``start_page`` until a page is empty.

The rows of a page are the body itself when it is a list, else the list under ``items_key``
(default: the first of ``items``, ``data``, ``results``, ``records``, ``rows`` that is a list).
A bearer token comes from the environment variable ``token_env`` (never from the command line
or the project file). Retries on 429 and 5xx with backoff (``Retry-After`` honoured, capped);
any other failure stops with the page URL and status in the message, after the rows already
yielded (ingest keeps them and re-running resumes by position).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from labelloop.core.errors import IngestError, quoted
from labelloop.sources.records import RawRecord

ITEM_KEYS = ("items", "data", "results", "records", "rows")
NEXT_KEYS = (("next",), ("next_url",), ("links", "next"), ("paging", "next"))
CURSOR_KEYS = (("next_cursor",), ("cursor",), ("meta", "next_cursor"))
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?', re.I)


def _dig(body: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _with_param(url: str, name: str, value: Any) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, str(value)))
    return urlunsplit(parts._replace(query=urlencode(query)))


class RestReader:
    """The rows of a paginated JSON API (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        items_key: str | None = None,
        page_param: str | None = None,
        start_page: int = 1,
        cursor_param: str = "cursor",
        token_env: str | None = None,
        max_pages: int = 100_000,
        timeout: float = 30.0,
        retries: int = 4,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise IngestError(f"{quoted(url)}: a REST source is an http:// or https:// URL")
        self.url = url
        self.items_key = items_key
        self.page_param = page_param
        self.start_page = start_page
        self.cursor_param = cursor_param
        self.max_pages = max_pages
        self.retries = retries
        self._sleep = sleep
        headers = {"Accept": "application/json"}
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise IngestError(f"environment variable {token_env} (the API token) is not set")
            headers["Authorization"] = f"Bearer {token}"
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)
        self._headers = headers
        self.source_id = f"rest:{urlunsplit(urlsplit(url)._replace(query='', fragment=''))}"
        self.pages_read = 0

    def columns(self) -> list[str] | None:
        return None

    def size_hint(self) -> int | None:
        return None

    def _get(self, url: str) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                response = self._client.get(url, headers=self._headers)
            except httpx.HTTPError as exc:
                if attempt == self.retries:
                    raise IngestError(f"REST source {quoted(url)}: {exc}") from None
                self._sleep(min(2.0**attempt, 30.0))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.retries:
                    break
                wait = response.headers.get("Retry-After", "")
                self._sleep(min(float(wait) if wait.isdigit() else 2.0**attempt, 30.0))
                continue
            return response
        raise IngestError(
            f"REST source {quoted(url)}: HTTP {response.status_code} after {self.retries + 1} tries"
        )

    def _rows(self, body: Any, url: str) -> list[Any]:
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            keys = (self.items_key,) if self.items_key else ITEM_KEYS
            for key in keys:
                value = _dig(body, tuple(key.split("."))) if key else None
                if isinstance(value, list):
                    return value
        want = repr(self.items_key) if self.items_key else "one of " + ", ".join(ITEM_KEYS)
        raise IngestError(f"REST source {quoted(url)}: no list of rows in the answer (key {want})")

    def _next(self, response: httpx.Response, body: Any, url: str, rows: list[Any]) -> str | None:
        link = _LINK_NEXT.search(response.headers.get("Link", ""))
        if link:
            return urljoin(url, link.group(1))
        for path in NEXT_KEYS:
            value = _dig(body, path)
            if isinstance(value, str) and value:
                return urljoin(url, value)
        for path in CURSOR_KEYS:
            value = _dig(body, path)
            if isinstance(value, str | int) and value != "":
                return _with_param(url, self.cursor_param, value)
        if self.page_param and rows:
            current = dict(parse_qsl(urlsplit(url).query)).get(self.page_param)
            page = int(current) if current and current.isdigit() else self.start_page
            return _with_param(url, self.page_param, page + 1)
        return None

    def records(self) -> Iterator[RawRecord]:
        url: str | None = self.url
        if self.page_param and self.page_param not in dict(parse_qsl(urlsplit(self.url).query)):
            url = _with_param(self.url, self.page_param, self.start_page)
        position = 0
        seen: set[str] = set()
        while url is not None and self.pages_read < self.max_pages:
            if url in seen:  # a server that points back at a page it already gave
                raise IngestError(f"REST source {quoted(url)}: the next page repeats a page")
            seen.add(url)
            response = self._get(url)
            if response.status_code >= 400:
                raise IngestError(
                    f"REST source {quoted(url)}: HTTP {response.status_code} "
                    f"{response.text[:200]!r}"
                )
            try:
                body = response.json()
            except ValueError:
                raise IngestError(f"REST source {quoted(url)}: the answer is not JSON") from None
            rows = self._rows(body, url)
            self.pages_read += 1
            for row in rows:
                position += 1
                if isinstance(row, dict):
                    yield RawRecord(position, fields=row)
                else:
                    yield RawRecord(
                        position, error=f"row {position}: not a JSON object", raw=repr(row)[:2000]
                    )
            url = self._next(response, body, url, rows)
