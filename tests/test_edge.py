"""The edge bundle: export, the on-device runtime, and sync back to the server (issue 14, item 6).

One small SMS text project is trained once for the module (MiniLM vectors, logistic head) and
exported once; each test works on its own copies and its own results buffer.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from labelloop.api.app import create_app
from labelloop.auth import create_token, create_user
from labelloop.demo.data import sms_spam_path
from labelloop.edge import BundleError, EdgeAnnotator, SyncError, read_manifest
from labelloop.edge import __main__ as edge_cli
from labelloop.edge.buffer import ResultBuffer
from labelloop.mlops.predictor import Predictor
from labelloop.project import Project
from labelloop.serve.edge_export import EdgeExportError, export_edge
from labelloop.store.edge import edge_results

pytest.importorskip("skl2onnx", reason="pip install 'labelloop[edge]'")
uvicorn = pytest.importorskip("uvicorn")

SMS = Path(__file__).resolve().parents[1] / "src" / "labelloop" / "demo" / "data" / "sms_spam.csv"
NEW_TEXTS = [
    "are we still meeting for lunch tomorrow?",
    "WINNER!! claim your free cash prize now, text CLAIM to 80082",
    "ok see you at 7",
    "URGENT your account has been selected for a reward call now",
    "can you pick up milk on the way home",
    "Congratulations you have won a holiday, reply YES",
    "i think i left my keys at yours",
    "hmm",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp = tmp_path_factory.mktemp("edge")
    raw = pd.read_csv(SMS).drop_duplicates("text")
    sms = pd.concat(
        [
            raw[raw["label"] == "ham"].sample(120, random_state=0),
            raw[raw["label"] == "spam"].sample(60, random_state=0),
        ]
    )
    csv = tmp / "sms.csv"
    sms.to_csv(csv, index=False)
    p = Project.init(
        tmp / "proj", name="sms", labels=["ham", "spam"], storage=f"sqlite:///{tmp / 's.db'}"
    )
    p.ingest(csv)
    items = p.items()
    by_text = dict(zip(sms["text"], sms["label"], strict=False))
    for item_id, content in zip(items["id"], items["content"], strict=True):
        p.label(int(item_id), [by_text[content]], annotator="ana")
    result = p.train(register=False, candidates=["logistic"], trials=0, folds=3)
    bundle = tmp / "bundle"
    manifest = export_edge(result.model_path, bundle, labels=["ham", "spam"], version="7")
    create_user(p.db, "dev", "reviewer", None)
    create_user(p.db, "peek", "viewer", None)
    ns = SimpleNamespace(
        p=p,
        tmp=tmp,
        model_path=Path(result.model_path),
        bundle=bundle,
        manifest=manifest,
        texts=sms["text"].tolist()[:40] + NEW_TEXTS,
        token=create_token(p.db, "dev"),
        viewer_token=create_token(p.db, "peek"),
    )
    yield ns
    p.close()


def _copy(trained: SimpleNamespace, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(trained.bundle, target)
    return target


@contextmanager
def running(app) -> Iterator[str]:  # noqa: ANN001
    """Serve ``app`` with uvicorn in a thread on a free loopback port (urllib needs a real
    socket); yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# -- export and the runtime ---------------------------------------------------------------


def test_bundle_answers_as_the_server_predictor(trained: SimpleNamespace, tmp_path: Path) -> None:
    predictor = Predictor.load(trained.model_path)
    expected = predictor.predict_proba(trained.texts)
    with EdgeAnnotator(trained.bundle, tmp_path / "r.sqlite") as edge:
        assert edge.labels == ["ham", "spam"]
        got = edge.predict_proba(trained.texts)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        answers = edge.annotate(trained.texts[:5])
        single = edge.predict_proba(trained.texts[:1])  # a batch of one, as a device runs it
    np.testing.assert_allclose(
        single, predictor.predict_proba(trained.texts[:1]), atol=1e-4, rtol=0
    )
    assert [a["label"] for a in answers] == [
        ["ham", "spam"][i] for i in expected[:5].argmax(axis=1)
    ]
    for a, p in zip(answers, expected[:5], strict=True):
        assert a["confidence"] == pytest.approx(p.max(), abs=1e-4)
        assert a["needs_review"] == (a["confidence"] < 0.9)
        assert set(a["probabilities"]) == {"ham", "spam"}
    assert [a["result_id"] for a in answers] == [1, 2, 3, 4, 5]


def test_manifest_records_every_file(trained: SimpleNamespace) -> None:
    m = read_manifest(trained.bundle)
    assert m["format_version"] == 1 and m["kind"] == "text" and m["model_version"] == "7"
    assert {
        "embedder.onnx",
        "tokenizer.json",
        "head.onnx",
        "labels.json",
        "thresholds.json",
    } <= set(m["files"])
    for name, entry in m["files"].items():
        assert (trained.bundle / name).stat().st_size == entry["bytes"]
        assert len(entry["sha256"]) == 64
    assert m["created_at"]
    size = sum(e["bytes"] for e in m["files"].values())
    assert size < 30e6, size


def test_flipped_byte_in_the_head_is_refused(trained: SimpleNamespace, tmp_path: Path) -> None:
    bundle = _copy(trained, tmp_path)
    head = bundle / "head.onnx"
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0x01
    head.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"head\.onnx: checksum mismatch"):
        EdgeAnnotator(bundle, tmp_path / "r.sqlite")


def test_missing_file_and_unknown_format_are_refused(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    bundle = _copy(trained, tmp_path)
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json: missing from the bundle"):
        EdgeAnnotator(bundle, tmp_path / "r.sqlite")
    shutil.copy(trained.bundle / "tokenizer.json", bundle / "tokenizer.json")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        EdgeAnnotator(bundle, tmp_path / "r.sqlite")
    manifest["format_version"] = 1
    manifest["files"]["../outside"] = {"bytes": 1, "sha256": "0" * 64}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bad file entry"):
        EdgeAnnotator(bundle, tmp_path / "r.sqlite")


def test_export_refuses_traversal_non_empty_folders_and_images(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    (tmp_path / "inner").mkdir()
    sneaky = tmp_path / "inner" / ".." / "escaped"
    with pytest.raises(EdgeExportError, match=r"must not contain '\.\.'"):
        export_edge(trained.model_path, sneaky)
    assert not (tmp_path / "escaped").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(EdgeExportError, match="not empty"):
        export_edge(trained.model_path, full)
    assert (full / "keep.txt").read_text() == "mine"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "inner")
    with pytest.raises(EdgeExportError, match="symbolic link"):
        export_edge(trained.model_path, link)
    manifest = export_edge(trained.model_path, full, overwrite=True, min_confidence=0.5)
    assert not (full / "keep.txt").exists()
    assert json.loads((full / "thresholds.json").read_text())["min_confidence"] == 0.5
    assert manifest["files"].keys() == read_manifest(full)["files"].keys()
    predictor = Predictor.load(trained.model_path)
    predictor.bundle["modality"] = "image"
    with pytest.raises(EdgeExportError, match="not supported"):
        export_edge(predictor, tmp_path / "img")
    with pytest.raises(EdgeExportError, match="not the project's labels"):
        export_edge(trained.model_path, tmp_path / "tax", labels=["ham", "eggs"])


def test_device_hashes_character_ngrams_as_scikit_learn_does() -> None:
    """The device's plain-Python hashing gives the server's vectors, to float rounding."""
    from sklearn.utils import murmurhash3_32 as sk_murmur

    from labelloop.edge.char_ngrams import char_ngram_vectors, murmurhash3_32
    from labelloop.embed.char_ngrams import char_ngram_vectors as server_vectors

    for data in [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", "h\u00e9llo \U0001f389".encode()]:
        assert murmurhash3_32(data) == sk_murmur(data, seed=0, positive=False), data
    texts = pd.read_csv(sms_spam_path())["text"].astype(str).tolist()[:300]
    texts += [
        "",
        "   ",
        "a",
        "I  \t am\n\nhere",
        "\u00c9COLE Stra\u00dfe",
        "x" * 300,
        "ok \U0001f389",
    ]
    for n_features in (7, 1024):
        np.testing.assert_allclose(
            char_ngram_vectors(texts, n_features), server_vectors(texts, n_features), atol=1e-6
        )


def test_runtime_imports_no_server_libraries() -> None:
    code = "import sys, json, labelloop.edge\nprint(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    for banned in ("sklearn", "pandas", "sqlalchemy", "labelloop.core", "httpx", "fastapi"):
        assert not any(m == banned or m.startswith(banned + ".") for m in loaded), banned
    ours = {m for m in loaded if m.startswith("labelloop.")}
    assert ours and all(m.startswith("labelloop.edge") for m in ours), ours


def test_edge_command_line_annotates_a_file(
    trained: SimpleNamespace, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps({"id": f"m{i}", "text": t}) for i, t in enumerate(NEW_TEXTS[:3]))
    )
    db = tmp_path / "cli.sqlite"
    assert edge_cli.main(["annotate", str(trained.bundle), str(source), "--db", str(db)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["m0", "m1", "m2"]
    assert ResultBuffer(db).counts() == {"results": 3, "synced": 0, "unsynced": 3}
    nobody = "http://127.0.0.1:9"  # the discard port: nothing listens
    args = ["sync", str(trained.bundle), nobody, "--token", "t", "--db", str(db)]
    assert edge_cli.main(args) == 1
    assert "error:" in capsys.readouterr().err
    assert ResultBuffer(db).counts()["unsynced"] == 3  # nothing marked without a 2xx


def test_cli_export_edge_falls_back_to_the_latest_model(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    from labelloop.cli.edge_commands import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "export-edge" a subcommand
        pass

    out = tmp_path / "cli-bundle"
    result = CliRunner().invoke(
        app, ["export-edge", "--out", str(out), "-p", str(trained.p.folder), "--json"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["model_version"] == trained.model_path.parent.name
    assert "latest trained model" in manifest["note"]
    read_manifest(out)


# -- sync -----------------------------------------------------------------------------------


def _queued(p: Project) -> dict[str, str]:
    """Queued items' content -> why they are queued."""
    from sqlalchemy import select

    from labelloop.store.models import ItemRow

    with p.db.engine.connect() as conn:
        rows = conn.execute(
            select(ItemRow.content, ItemRow.queue_reason).where(
                ItemRow.project_id == p.id, ItemRow.state == "queued"
            )
        )
        return {content: reason for content, reason in rows}


def test_sync_stores_each_result_once_and_queues_low_confidence(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    p = trained.p
    app = create_app(p)
    edge = EdgeAnnotator(trained.bundle, tmp_path / "r.sqlite")
    known = trained.texts[0]  # labeled on the server already: never queued again
    answers = edge.annotate([known, *NEW_TEXTS])
    needs = [t for t, a in zip([known, *NEW_TEXTS], answers, strict=True) if a["needs_review"]]
    with running(app) as url:
        with pytest.raises(SyncError, match="HTTP 403"):
            edge.sync(url, trained.viewer_token)
        with pytest.raises(SyncError, match="HTTP 401"):
            edge.sync(url, "not-a-token")
        first = edge.sync(url, trained.token, batch=4)
        assert first["sent"] == len(answers) and first["new"] == len(answers)
        assert first["batches"] == 3
        assert edge.sync(url, trained.token)["sent"] == 0  # nothing left to send
    stored = edge_results(p.db, p.id, edge.device_id)
    assert sorted(r["result_id"] for r in stored) == [a["result_id"] for a in answers]
    queued = _queued(p)
    new_needing = [t for t in needs if t != known]
    assert new_needing, "the fixture should give some low-confidence new texts"
    for text in new_needing:
        assert queued.get(text) == "edge", text
    assert known not in queued
    for t, a in zip([known, *NEW_TEXTS], answers, strict=True):
        if not a["needs_review"]:
            assert t not in queued
    linked = [r for r in stored if r["item_id"] is not None]
    assert len(linked) == len(needs)  # the known text links to its existing item
    edge.close()


def test_interrupted_syncs_store_each_result_once(
    trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = trained.p
    inner = create_app(p)
    calls = {"n": 0}

    async def fails_after_storing_the_second_batch(scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http" or scope["path"] != "/api/edge/sync":
            await inner(scope, receive, send)
            return
        calls["n"] += 1
        if calls["n"] != 2:
            await inner(scope, receive, send)
            return

        async def dropped(message):  # noqa: ANN001 - the server stores, the answer is lost
            return None

        await inner(scope, receive, dropped)
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail": "proxy failed"}'})

    edge = EdgeAnnotator(trained.bundle, tmp_path / "r.sqlite")
    answers = edge.annotate(NEW_TEXTS + [t.upper() for t in NEW_TEXTS])  # 16 answers
    with running(fails_after_storing_the_second_batch) as url:
        with pytest.raises(SyncError, match="HTTP 502"):
            edge.sync(url, trained.token, batch=5)
        assert edge.buffer.counts()["synced"] == 5  # the first batch only
        # The device dies after the server stored a batch, before marking it synced.
        real_mark = ResultBuffer.mark_synced

        def killed(self, ids):  # noqa: ANN001
            raise KeyboardInterrupt("device lost power")

        monkeypatch.setattr(ResultBuffer, "mark_synced", killed)
        with pytest.raises(KeyboardInterrupt):
            edge.sync(url, trained.token, batch=5)
        monkeypatch.setattr(ResultBuffer, "mark_synced", real_mark)
        done = edge.sync(url, trained.token, batch=5)
    # Results 6-10 were stored twice before (the lost answer, the killed device): only the
    # last two batches (11-15, 16) are new.
    assert done["sent"] == 11
    assert done["new"] == 6
    stored = edge_results(p.db, p.id, edge.device_id)
    assert sorted(r["result_id"] for r in stored) == [a["result_id"] for a in answers]
    assert edge.buffer.counts() == {"results": 16, "synced": 16, "unsynced": 0}
    queued = _queued(p)
    for t, a in zip(NEW_TEXTS + [t.upper() for t in NEW_TEXTS], answers, strict=True):
        if a["needs_review"]:
            assert t in queued
    edge.close()


def test_sync_endpoint_limits(trained: SimpleNamespace) -> None:
    from fastapi.testclient import TestClient

    p = trained.p
    headers = {"Authorization": f"Bearer {trained.token}"}
    row = {"result_id": 1, "label": "ham", "confidence": 0.5, "needs_review": True}
    with TestClient(create_app(p)) as client:
        too_many = {"device_id": "d1", "results": [row] * 5001}
        assert client.post("/api/edge/sync", json=too_many, headers=headers).status_code in (
            413,
            422,
        )
        long_text = {"device_id": "d1", "results": [row | {"text": "x" * 20_001}]}
        r = client.post("/api/edge/sync", json=long_text, headers=headers)
        assert r.status_code == 422 and "max_content_chars" in r.text
        bad_device = {"device_id": "../etc", "results": [row]}
        assert client.post("/api/edge/sync", json=bad_device, headers=headers).status_code == 422
        twice = {"device_id": "d2", "results": [row, row]}
        first = client.post("/api/edge/sync", json=twice, headers=headers).json()
        assert first == {"received": 2, "new": 1, "queued": 0, "rejected": 0}
        again = client.post("/api/edge/sync", json=twice, headers=headers).json()
        assert again["new"] == 0


# -- table models and the registry's champion ----------------------------------------------


def test_table_model_exports_head_only(tmp_path: Path) -> None:
    from labelloop.mlops.train import train_frame

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(240, 4)), columns=["a", "b", "c", "d"])
    X.loc[::17, "b"] = np.nan  # imputed, with a missing indicator
    X.loc[5, "c"] = 40.0  # clipped
    y = np.where(X["a"] + X["c"].clip(-3, 3) > 0, "yes", "no")
    result = train_frame(
        X, y, folder=tmp_path / "model", featurizer="table", candidates=["logistic"], trials=0
    )
    manifest = export_edge(result.model_path, tmp_path / "bundle", min_confidence=0.6)
    assert manifest["kind"] == "table" and "embedder.onnx" not in manifest["files"]
    probe = X.head(30).copy()
    probe.loc[3, "a"] = np.nan
    probe.loc[4, "d"] = -99.0
    rows = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in probe.to_dict("records")
    ]
    expected = Predictor.load(result.model_path).predict_proba(probe)
    with EdgeAnnotator(tmp_path / "bundle", tmp_path / "r.sqlite") as edge:
        np.testing.assert_allclose(edge.predict_proba(rows), expected, atol=1e-4, rtol=0)
        answers = edge.annotate(rows[:3])
    assert all(a["needs_review"] == (a["confidence"] < 0.6) for a in answers)
    categories = X.assign(kind=np.where(X["a"] > 0, "big", "small"))
    with_categories = train_frame(
        categories, y, folder=tmp_path / "m2", featurizer="table", candidates=["logistic"], trials=0
    )
    with pytest.raises(EdgeExportError, match="number columns only"):
        export_edge(with_categories.model_path, tmp_path / "b2")
    assert not (tmp_path / "b2").exists()  # refused before anything was written


def test_export_takes_the_registry_champion(
    trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelloop.serve.edge_export import export_project_edge

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = Project.open(trained.p.folder)
    try:
        result = p.train(register=True, candidates=["logistic"], trials=0, folds=3)
        p.promote(result.registered_version)
        manifest = export_project_edge(p.ctx, tmp_path / "champion", min_confidence=0.8)
    finally:
        p.close()
    assert manifest["model_version"] == str(result.registered_version)
    assert "note" not in manifest
    assert read_manifest(tmp_path / "champion")["min_confidence"] == 0.8
