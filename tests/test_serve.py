"""The prediction app and batch prediction (issue 14, item 6), over real HTTP: uvicorn on a free
port in a thread, httpx as the client. Two small logistic models stand for the registry's
champion (version 1) and challenger (version 2); ``resolve`` is a dict lookup."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from labelloop import Project
from labelloop.core.config import ModelSettings, ServingSettings
from labelloop.core.errors import LabelloopError
from labelloop.mlops.predictor import Predictor
from labelloop.mlops.train import train_frame
from labelloop.serve.app import create_predict_app
from labelloop.serve.batch import predict_file
from labelloop.serve.inputs import InputError, check_rows
from labelloop.serve.traffic import choose_variant
from labelloop.store.predictions import counts_by_variant, recent_predictions

uvicorn = pytest.importorskip("uvicorn")


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    path: Path


def _cancer() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_breast_cancer(as_frame=True)
    X = data.frame.drop(columns="target").iloc[:, :6].copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    names = np.asarray(data.target_names)
    return X, names[data.target.to_numpy()]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Version]:
    """Champion: a logistic model on the breast cancer columns. Challenger: the same trained on
    the labels swapped, so its answers are the opposite and tell themselves apart."""
    X, y = _cancer()
    root = tmp_path_factory.mktemp("models")
    settings = ModelSettings(cv_folds=2, trials=0)
    out = {}
    swapped = np.where(y == "benign", "malignant", "benign")
    for version, (alias, labels) in enumerate([("champion", y), ("challenger", swapped)], start=1):
        result = train_frame(
            X, labels, settings=settings, folder=root / alias, candidates=["logistic"]
        )
        out[alias] = Version("cancer", version, Path(result.model_path).parent)
    return out


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project.init(
        tmp_path / "proj",
        name="cancer",
        labels=["malignant", "benign"],
        modality="tabular",
        content_fields=["*"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    p.create_user("client", "viewer")
    p.create_user("boss", "admin")
    yield p
    p.close()


def _token(p: Project, user: str = "client", scope: str = "predict") -> dict[str, str]:
    return {"Authorization": f"Bearer {p.create_token(user, scope=scope).token}"}


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn (lifespan on) in a thread on a free loopback port."""
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it each answer waits ~40 ms on the client's delayed ACK (measured).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def serving(
    p: Project, aliases: dict[str, Version | None], **settings: Any
) -> Iterator[tuple[httpx.Client, Any]]:
    app = create_predict_app(
        p.ctx,
        resolve=aliases.get,
        settings=ServingSettings(**settings),
        poll_seconds=0,
        max_body_bytes=200_000,
    )
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.headers.update(_token(p))
        yield client, app


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    X, _ = _cancer()
    return X.iloc[start : start + n].to_dict(orient="records")


# -- A/B ------------------------------------------------------------------------------------


def test_choose_variant_is_sticky_pure_and_bounded() -> None:
    keys = [f"user-{i}" for i in range(2000)]
    first = [choose_variant(k, 0.3) for k in keys]
    assert first == [choose_variant(k, 0.3) for k in keys]
    assert abs(first.count("challenger") / 2000 - 0.3) < 0.05
    assert {choose_variant(k, 0.0) for k in keys[:50]} == {"champion"}
    assert {choose_variant(k, 1.0) for k in keys[:50]} == {"challenger"}
    # A key on the challenger side at 0.3 stays there at a larger share (monotone buckets).
    assert all(
        choose_variant(k, 0.5) == "challenger"
        for k, v in zip(keys, first, strict=True)
        if v == "challenger"
    )
    with pytest.raises(ValueError, match="challenger_share"):
        choose_variant("k", 1.5)


def test_ab_split_over_http_is_sticky_and_logged(
    project: Project, models: dict[str, Version]
) -> None:
    row = _rows(1)[0]
    with serving(project, models, challenger_share=0.3) as (client, app):
        seen: dict[str, str] = {}
        for i in range(2000):
            r = client.post("/predict", json={"input": row, "key": f"user-{i}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_version"] == (1 if body["variant"] == "champion" else 2)
            assert body["request_id"] == r.headers["x-request-id"]
            seen[f"user-{i}"] = body["variant"]
        share = sum(v == "challenger" for v in seen.values()) / len(seen)
        assert abs(share - 0.3) < 0.05, share
        for key in list(seen)[:20]:  # the same key lands on the same side again
            r = client.post("/predict", json={"input": row, "key": key})
            assert r.json()["variant"] == seen[key]
        # The two models disagree (the challenger learnt swapped labels).
        label = {
            v: client.post("/predict", json={"input": row, "key": k}).json()["predictions"][0]
            for k, v in list(seen.items())[:40]
        }
        assert label["champion"]["label"] != label["challenger"]["label"]
    # No flush here: the app's shutdown writes what is still queued.
    counts = {
        (c["variant"], c["served"]): c["rows"]
        for c in counts_by_variant(project.db, project.ctx.id)
    }
    assert counts[("champion", True)] + counts[("challenger", True)] == 2000 + 20 + 40
    assert ("shadow", False) not in counts


def test_shadow_scores_with_the_challenger_logs_it_unserved_and_never_returns_it(
    project: Project, models: dict[str, Version]
) -> None:
    rows = _rows(3)
    with serving(project, models, shadow=True) as (client, app):
        answers = [client.post("/predict", json={"inputs": rows}).json() for _ in range(5)]
        app.state.recorder.flush()
        assert app.state.recorder.stats()["shadow_errors"] == 0
    for a in answers:
        assert (a["variant"], a["model_version"]) == ("champion", 1)
        assert set(a) == {"request_id", "model_name", "model_version", "variant", "predictions"}
        assert len(a["predictions"]) == 3
    log = recent_predictions(project.db, project.ctx.id, limit=100)
    served = [r for r in log if r["served"]]
    shadow = [r for r in log if not r["served"]]
    assert len(served) == len(shadow) == 15
    assert {(r["variant"], r["model_version"]) for r in shadow} == {("shadow", 2)}
    assert {r["request_id"] for r in shadow} == {a["request_id"] for a in answers}
    # The same rows (same input hashes), opposite answers.
    by_key = {(r["request_id"], r["input_ref"]): r for r in served}
    for r in shadow:
        twin = by_key[(r["request_id"], r["input_ref"])]
        assert r["output"]["label"] != twin["output"]["label"]
    assert len({r["input_ref"] for r in served}) == 3


# -- /invocations ---------------------------------------------------------------------------


def test_invocations_accepts_every_mlflow_payload_and_matches_predict_frame(
    project: Project, models: dict[str, Version]
) -> None:
    rows = _rows(4, start=10)
    frame = pd.DataFrame(rows)
    expected = Predictor.load(models["champion"].path).predict_frame(frame).to_dict("records")
    payloads = {
        "dataframe_split": {"dataframe_split": frame.to_dict(orient="split", index=False)},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "instances as lists": {"instances": frame.to_numpy().tolist()},
        "inputs as columns": {"inputs": frame.to_dict(orient="list")},
    }
    with serving(project, models) as (client, _app):
        answers = {k: client.post("/invocations", json=v) for k, v in payloads.items()}
        answers["csv"] = client.post(
            "/invocations",
            content=frame.to_csv(index=False).encode(),
            headers={"Content-Type": "text/csv"},
        )
        unsupported = client.post(
            "/invocations", content=b"x", headers={"Content-Type": "text/plain"}
        )
    assert unsupported.status_code == 415
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.text)
        got = r.json()["predictions"]
        assert [g["label"] for g in got] == [e["label"] for e in expected], name
        for g, e in zip(got, expected, strict=True):
            assert g == pytest.approx(e), name
        assert r.headers["x-model-version"] == "cancer/1"


# -- auth, readiness, reload ----------------------------------------------------------------


def test_only_predict_tokens_pass_and_probes_need_none(
    project: Project, models: dict[str, Version]
) -> None:
    row = _rows(1)[0]
    with serving(project, models) as (client, _app):
        assert httpx.get(f"{str(client.base_url).rstrip('/')}/health").status_code == 200
        assert httpx.get(f"{str(client.base_url).rstrip('/')}/ready").json()["ready"] is True
        ok = client.post("/predict", json={"input": row})
        assert ok.status_code == 200
        for headers in ({}, {"Authorization": "Bearer nope"}, _token(project, scope="api")):
            r = httpx.post(
                f"{str(client.base_url).rstrip('/')}/predict", json={"input": row}, headers=headers
            )
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"] == "Bearer"
        api_only = httpx.post(
            f"{str(client.base_url).rstrip('/')}/invocations",
            json={"instances": [row]},
            headers=_token(project, scope="api"),
        )
        assert api_only.status_code == 401 and "scope" in api_only.json()["detail"]
        assert client.post("/reload").status_code == 403  # a viewer's predict token
        models_now = client.get("/models").json()
        assert models_now["champion"]["version"] == 1
        assert models_now["challenger"]["version"] == 2
        # Prometheus metrics of the prediction app (issue 15, item 3), behind the same token.
        tagged = client.post("/predict", json={"input": row}, headers={"X-Request-ID": "t-1"})
        assert tagged.headers["X-Request-ID"] == "t-1" == tagged.json()["request_id"]
        metrics = client.get("/metrics").text
        assert 'app="predict",method="POST",route="/predict",status="200"' in metrics
        assert "labelloop_predictions_total{" in metrics and 'variant="champion"' in metrics
        bare = httpx.get(f"{str(client.base_url).rstrip('/')}/metrics")
        assert bare.status_code == 401


def test_ready_waits_for_a_champion_and_reload_follows_the_alias(
    project: Project, models: dict[str, Version]
) -> None:
    aliases: dict[str, Version | None] = {"champion": None, "challenger": None}
    row = _rows(1)[0]
    with serving(project, aliases) as (client, _app):
        client.headers.update(_token(project, "boss"))
        assert httpx.get(f"{str(client.base_url).rstrip('/')}/ready").status_code == 503
        assert client.post("/predict", json={"input": row}).status_code == 503
        aliases["champion"] = models["champion"]
        r = client.post("/reload")
        assert r.status_code == 200 and r.json()["changes"] == ["champion: none -> 1"]
        assert httpx.get(f"{str(client.base_url).rstrip('/')}/ready").status_code == 200
        assert client.post("/predict", json={"input": row}).json()["model_version"] == 1
        aliases["champion"] = models["challenger"]  # promoted
        assert client.post("/reload").json()["changes"] == ["champion: 1 -> 2"]
        assert client.post("/predict", json={"input": row}).json()["model_version"] == 2


def test_a_registry_that_fails_leaves_the_app_unready_with_the_reason(project: Project) -> None:
    def broken(alias: str) -> Version | None:
        raise ConnectionError("registry down")

    with serving(project, {}) as (client, app):
        app.state.service.resolve = broken
        app.state.service.refresh()
        r = httpx.get(f"{str(client.base_url).rstrip('/')}/ready")
        assert r.status_code == 503 and "registry down" in r.json()["error"]
        assert "registry down" in client.post("/predict", json={"input": {}}).json()["detail"]


# -- bad input ------------------------------------------------------------------------------


def test_bad_inputs_get_422_with_a_message(project: Project, models: dict[str, Version]) -> None:
    row = _rows(1)[0]
    missing = {k: v for k, v in row.items() if k != "mean_radius"}
    cases = {
        "missing column": ({"input": missing}, "mean_radius"),
        "nested value": ({"input": {**row, "mean_radius": [1, 2]}}, "column 'mean_radius'"),
        "a string row": ({"input": "hello"}, "object of column values"),
        "too many rows": ({"inputs": [row] * 6}, "at most 5"),
        "no rows": ({"inputs": []}, "no rows"),
        "both": ({"input": row, "inputs": [row]}, "either"),
        "neither": ({}, "either"),
    }
    with serving(project, models, max_rows=5) as (client, _app):
        for name, (body, needle) in cases.items():
            r = client.post("/predict", json=body)
            assert r.status_code == 422, (name, r.text)
            assert needle in json.dumps(r.json()["detail"]), (name, r.json())
        for body, needle in [
            (b"{not json", "not valid JSON"),
            (b'{"records": []}', "exactly one of"),
            (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "one per column"),
        ]:
            r = client.post(
                "/invocations", content=body, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 422 and needle in r.json()["detail"], r.text
        # A null value is a missing value, which the model imputes: accepted.
        assert (
            client.post("/predict", json={"input": {**row, "mean_radius": None}}).status_code == 200
        )
        big = client.post("/predict", json={"inputs": [row] * 2000})
        assert big.status_code == 413 and "200,000 bytes" in big.json()["detail"]
        chunked = client.post(  # no Content-Length: counted as it arrives
            "/invocations",
            content=iter([b'{"instances": [' + b'{"a": 1},' * 30_000, b"{}]}"]),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413


def test_text_rows_must_be_strings() -> None:
    class TextModel:
        featurizer = "text"
        columns: list[str] = []

    check_rows(["a text", {"text": "another"}], TextModel(), 10)  # type: ignore[arg-type]
    for bad, needle in [
        ([3], "takes a string, not int"),
        ([{"text": 3}], "not int"),
        ([{"x": "y"}], "'text'"),
    ]:
        with pytest.raises(InputError, match=needle):
            check_rows(bad, TextModel(), 10)  # type: ignore[arg-type]


# -- batch ----------------------------------------------------------------------------------


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)


@pytest.mark.parametrize(
    ("src", "dst"),
    [("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet"), ("csv", "parquet")],
)
def test_batch_predict_keeps_the_input_columns_and_matches_predict_frame(
    tmp_path: Path, models: dict[str, Version], src: str, dst: str
) -> None:
    X, y = _cancer()
    frame = X.assign(row_id=[f"r{i}" for i in range(len(X))], label=y)  # ground truth kept
    predictor = Predictor.load(models["champion"].path)
    expected = predictor.predict_frame(frame)
    source = tmp_path / f"in.{src}"
    _write(frame, source)
    seen: list[tuple[int, int | None]] = []
    summary = predict_file(
        predictor,
        source,
        tmp_path / "out" / "deeper" / f"scored.{dst}",
        batch_size=100,
        progress=lambda done, total: seen.append((done, total)),
    )
    out = _read(Path(summary.output))
    assert summary.rows == len(frame) and summary.batches == 6
    assert [d for d, _ in seen] == [100, 200, 300, 400, 500, len(frame)]
    assert seen[-1][1] == (len(frame) if src == "parquet" else None)
    assert list(out.columns) == [*frame.columns, "label_predicted", "confidence"]
    assert out["row_id"].tolist() == frame["row_id"].tolist()
    assert out["label"].tolist() == frame["label"].tolist()
    assert out["label_predicted"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(out["confidence"], expected["confidence"], rtol=1e-9)
    np.testing.assert_allclose(out["mean_radius"], frame["mean_radius"], rtol=1e-12)
    assert summary.label_counts == expected["label"].value_counts().to_dict()
    assert not list((tmp_path / "out" / "deeper").glob(".*part"))


def test_batch_predict_refuses_bad_paths(tmp_path: Path, models: dict[str, Version]) -> None:
    predictor = Predictor.load(models["champion"].path)
    source = tmp_path / "in.csv"
    pd.DataFrame(_rows(5)).to_csv(source, index=False)
    with pytest.raises(LabelloopError, match="overwrite the input"):
        predict_file(predictor, source, tmp_path / "." / "in.csv")
    with pytest.raises(LabelloopError, match="unknown file type"):
        predict_file(predictor, source, tmp_path / "out.xlsx")
    pd.DataFrame(_rows(5)).drop(columns="mean_radius").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(LabelloopError, match="mean_radius"):
        predict_file(predictor, tmp_path / "bad.csv", tmp_path / "bad_out.csv")
    assert not (tmp_path / "bad_out.csv").exists()


def test_predict_command_writes_predictions(
    tmp_path: Path, models: dict[str, Version], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelloop.cli.serve_commands import register
    from labelloop.serve import service

    app = typer.Typer()
    register(app)
    source = tmp_path / "in.jsonl"
    pd.DataFrame(_rows(30)).to_json(source, orient="records", lines=True)
    runner = CliRunner()
    by_model = runner.invoke(
        app,
        ["predict", str(source), str(tmp_path / "a.csv"), "--model", str(models["champion"].path)],
    )
    assert by_model.exit_code == 0, by_model.output
    asked: list[dict[str, Any]] = []

    def fake_version(ctx: Any, **kw: Any) -> Version:
        asked.append(kw)
        return models["challenger"]

    monkeypatch.setattr(service, "registry_version", fake_version)
    by_version = runner.invoke(
        app,
        [
            "predict",
            str(source),
            str(tmp_path / "b.csv"),
            "-p",
            str(project.ctx.folder),
            "--version",
            "2",
            "--json",
        ],
    )
    assert by_version.exit_code == 0, by_version.output
    assert asked == [{"alias": None, "version": 2}]
    assert json.loads(by_version.stdout)["rows"] == 30
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert (a["label"] != b["label"]).all()  # the challenger learnt the labels swapped
    both = runner.invoke(
        app, ["predict", str(source), "x.csv", "--version", "1", "--alias", "champion"]
    )
    assert both.exit_code == 1 and "choose one" in both.output


# -- with the real registry -----------------------------------------------------------------


def test_the_app_and_the_command_follow_the_registry_aliases(
    project: Project, models: dict[str, Version], tmp_path: Path
) -> None:
    """No ``resolve``: the app asks the project's MLflow registry where the aliases point."""
    pytest.importorskip("mlflow")
    from labelloop.cli.serve_commands import register

    reg = project.registry
    versions = {
        alias: reg.registry.register(reg.name, m.path, params={}, metrics={}, tags={}).version
        for alias, m in models.items()
    }
    reg.set_alias("champion", versions["champion"], reason="test")
    app = create_predict_app(project.ctx, poll_seconds=0)
    row = _rows(1)[0]
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.headers.update(_token(project, "boss"))
        first = client.post("/predict", json={"input": row}).json()
        assert (first["model_name"], first["model_version"]) == (reg.name, versions["champion"])
        reg.set_alias("champion", versions["challenger"], reason="test")
        changed = client.post("/reload").json()
        assert changed["changes"] == [
            f"champion: {versions['champion']} -> {versions['challenger']}"
        ]
        second = client.post("/predict", json={"input": row}).json()
        assert second["model_version"] == versions["challenger"]
        assert second["predictions"][0]["label"] != first["predictions"][0]["label"]
    cli = typer.Typer()
    register(cli)
    source = tmp_path / "rows.csv"
    pd.DataFrame(_rows(20)).to_csv(source, index=False)
    out = CliRunner().invoke(
        cli, ["predict", str(source), str(tmp_path / "o.parquet"), "-p", str(project.ctx.folder)]
    )
    assert out.exit_code == 0, out.output
    scored = pd.read_parquet(tmp_path / "o.parquet")
    expected = Predictor.load(models["challenger"].path).predict_frame(pd.DataFrame(_rows(20)))
    assert scored["label"].tolist() == expected["label"].tolist()
