"""Rows from a paginated REST API (issue 14, item 2), against a real HTTP server on a local
port: the three pagination styles, retries on 503, clear errors, ingest into a project and
training the deployed model on the rows directly."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from labelloop import Project
from labelloop.core.errors import IngestError
from labelloop.sources.rest import RestReader

ROWS = [{"id": i, "x": float(i), "kind": "even" if i % 2 == 0 else "odd"} for i in range(23)]
PAGE = 5


class _Api(BaseHTTPRequestHandler):
    rows: list[dict[str, Any]] = ROWS
    failures: dict[str, int] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/flaky" and self.failures.get("flaky", 0) < 2:
            self.failures["flaky"] = self.failures.get("flaky", 0) + 1
            return self._send(503, {"error": "busy"}, {"Retry-After": "1"})
        if parts.path == "/secret" and self.headers.get("Authorization") != "Bearer s3cret":
            return self._send(401, {"error": "token"})
        if parts.path == "/notjson":
            return self._send(200, b"<html>")
        offset = int(q.get("offset", "0"))
        chunk = self.rows[offset : offset + PAGE]
        more = offset + PAGE < len(self.rows)
        nxt = f"{parts.path}?offset={offset + PAGE}"
        if parts.path in ("/link", "/flaky", "/secret"):
            return self._send(200, chunk, {"Link": f'<{nxt}>; rel="next"'} if more else {})
        if parts.path == "/body":
            return self._send(200, {"results": chunk, "next": nxt if more else None})
        if parts.path == "/pages":
            page = int(q.get("page", "1"))
            return self._send(200, {"data": self.rows[(page - 1) * PAGE : page * PAGE]})
        if parts.path == "/loop":
            return self._send(200, {"items": chunk, "next": parts.path + "?offset=0"})
        self._send(404, {"error": "no such path"})


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _read(reader: RestReader) -> list[dict[str, Any]]:
    return [r.fields for r in reader.records()]


def test_every_pagination_style_reads_every_row_once(api: str) -> None:
    assert _read(RestReader(f"{api}/link")) == ROWS
    assert _read(RestReader(f"{api}/body")) == ROWS
    reader = RestReader(f"{api}/pages", page_param="page")
    assert _read(reader) == ROWS
    assert reader.pages_read == 6  # five full or partial pages, then the empty one


def test_retries_tokens_and_clear_errors(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    assert _read(RestReader(f"{api}/flaky", sleep=waits.append)) == ROWS
    assert waits == [1.0, 1.0]  # Retry-After honoured, twice
    with pytest.raises(IngestError, match="LABELLOOP_TEST_TOKEN"):
        RestReader(f"{api}/secret", token_env="LABELLOOP_TEST_TOKEN")
    monkeypatch.setenv("LABELLOOP_TEST_TOKEN", "s3cret")
    assert len(_read(RestReader(f"{api}/secret", token_env="LABELLOOP_TEST_TOKEN"))) == 23
    with pytest.raises(IngestError, match="HTTP 404"):
        _read(RestReader(f"{api}/missing"))
    with pytest.raises(IngestError, match="not JSON"):
        _read(RestReader(f"{api}/notjson"))
    with pytest.raises(IngestError, match="repeats a page"):
        _read(RestReader(f"{api}/loop"))
    with pytest.raises(IngestError, match="no list of rows"):
        _read(RestReader(f"{api}/body", items_key="nope"))
    with pytest.raises(IngestError, match="http"):
        RestReader("file:///etc/passwd")


def test_ingest_and_train_on_rows_from_an_api(api: str, tmp_path: Path) -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, :6].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = np.array(data.target_names)[data.target]
    rows = frame.to_dict("records")
    _Api.rows = rows
    try:
        p = Project.init(
            tmp_path / "proj",
            name="rows",
            labels=list(data.target_names),
            modality="tabular",
            content_fields=["*"],
            storage=f"sqlite:///{tmp_path / 's.db'}",
            model={"cv_folds": 3, "trials": 0},
        )
        try:
            report = p.ingest_rest(f"{api}/body")
            assert report.items_added == len(rows) - report.duplicates
            assert report.quarantined == 0
            result = p.train_rows(RestReader(f"{api}/link"), "diagnosis", candidates=["logistic"])
            assert result.test_metrics["macro_f1"] > 0.85
            assert sum(result.split_sizes.values()) == len(rows)
            assert result.registered_version == 1
            # The same rows give the same dataset version (stable, content-addressed splits).
            again = p.train_rows(
                RestReader(f"{api}/pages", page_param="page"),
                "diagnosis",
                candidates=["logistic"],
                register=False,
            )
            assert again.dataset_version == result.dataset_version
            with pytest.raises(Exception, match="no column 'label'"):
                p.train_rows(RestReader(f"{api}/link"), "label")
        finally:
            p.close()
    finally:
        _Api.rows = ROWS
