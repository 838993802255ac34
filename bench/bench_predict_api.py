"""The prediction app's latency and throughput over HTTP (issue 14, item 6).

    python bench/bench_predict_api.py --requests 500 --seconds 10 --clients 4

Trains a small logistic model on breast cancer's 30 columns (a student-sized model), registers
and promotes it, then times one-row predictions:

- in-process: ``Predictor.predict_frame([row])`` in this process, the floor;
- ``POST /predict`` and ``POST /invocations`` of ``labelloop serve-models``' app (uvicorn, one
  process, run as a subprocess), with the token cache on (30 s) and off (every request checks
  its token in the store), and with the prediction log on (the default);
- ``POST /invocations`` of ``mlflow models serve -m models:/<name>@champion --env-manager
  local`` on the same registered version, when MLflow can start it (else a printed note).

Latency: one client, sequential, keep-alive, p50/p99 over ``--requests`` after 50 warm-ups.
Overhead per request: the round trip minus the model's time the app reports in its
``Server-Timing`` header (robust to the machine's load drifting between runs); for MLflow,
which reports none, the round trip minus the in-process p50.
Throughput: ``--clients`` threads, each with its own keep-alive connection, for
``--seconds``; the clients run on the same machine, so on few cores they take CPU from the
server and the figure is a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _http import free_port  # bench/_http.py

SERVER = """
import json, statistics, sys, time, uvicorn
from labelloop.core.config import ServingSettings
from labelloop.serve.app import create_predict_app
from labelloop.store.context import ProjectContext
ctx = ProjectContext.open(sys.argv[1])
app = create_predict_app(
    ctx,
    settings=ServingSettings(**json.loads(sys.argv[3])),
    token_ttl=float(sys.argv[4]),
    inline_rows=int(sys.argv[5]),
)
own = []  # server-side ms of each POST, first byte in to last byte out, minus the model's

async def timed(scope, receive, send):
    # GET /_own: the p50 and p99 of `own` since the last call (then cleared).
    if scope["type"] == "http" and scope["path"] == "/_own":
        xs = sorted(own) or [0.0]
        body = json.dumps([statistics.median(xs), xs[int(0.99 * (len(xs) - 1))]]).encode()
        own.clear()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "http" or scope["method"] != "POST":
        await app(scope, receive, send)
        return
    start, model = time.perf_counter(), [0.0]

    async def send_timed(message):
        if message["type"] == "http.response.start":
            for k, v in message.get("headers", []):
                if k == b"server-timing":
                    model[0] = float(v.decode().split("dur=")[1])
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            own.append((time.perf_counter() - start) * 1000 - model[0])

    await app(scope, receive, send_timed)

uvicorn.run(timed, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", http=sys.argv[6])
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def wait_for(url: str, proc: subprocess.Popen, seconds: float) -> bool:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def latency(
    base: str, path: str, body: Any, headers: dict[str, str], n: int
) -> tuple[list[float], list[float]]:
    """Round trips in ms, and each minus the model's own time the server reports in
    ``Server-Timing`` (empty when it reports none)."""
    import httpx

    times, overheads = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        for i in range(n + 50):
            t = time.perf_counter()
            r = c.post(path, json=body)
            dt = (time.perf_counter() - t) * 1000
            r.raise_for_status()
            if i >= 50:
                times.append(dt)
                timing = r.headers.get("server-timing", "")
                if "dur=" in timing:
                    overheads.append(dt - float(timing.split("dur=")[1]))
    return times, overheads


def throughput(
    base: str, path: str, body: Any, headers: dict[str, str], clients: int, seconds: float
) -> float:
    import httpx

    counts = [0] * clients
    stop_at = time.monotonic() + seconds

    def run(i: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            while time.monotonic() < stop_at:
                c.post(path, json=body).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def line(
    name: str, times: list[float], floor: float, rps: float | None = None, own: list[float] = ()
) -> str:
    """p50/p99; the overhead is the round trip minus the server's model time when it reports
    one (``own``), else minus the in-process p50 (``floor``)."""
    p50 = statistics.median(times)
    out = f"{name:<48} p50 {p50:6.2f} ms  p99 {pct(times, 0.99):6.2f} ms"
    if own:
        out += f"  overhead p50 {statistics.median(own):5.2f} p99 {pct(list(own), 0.99):5.2f} ms"
    else:
        out += f"  overhead p50 {p50 - floor:5.2f} ms (vs in-process)"
    if rps is not None:
        out += f"  {rps:5.0f} req/s"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    ap.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="uvicorn's HTTP parser (auto: httptools when installed, else h11)",
    )
    args = ap.parse_args()

    import httpx
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from labelloop.mlops.predictor import Predictor
    from labelloop.project import Project

    work = Path(tempfile.mkdtemp(prefix="labelloop-predict-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        data = load_breast_cancer(as_frame=True)
        X = data.frame.drop(columns="target")
        X.columns = [c.replace(" ", "_") for c in X.columns]
        names = list(data.target_names)
        csv = work / "rows.csv"
        X.assign(row_id=np.arange(len(X))).to_csv(csv, index=False)
        p = Project.init(
            work / "p",
            name="cancer",
            labels=names,
            modality="tabular",
            content_fields=["*"],
            id_field="row_id",
            model={"cv_folds": 3, "trials": 0},
        )
        p.ingest(csv)
        items = p.items().sort_values("id")
        y = data.target.to_numpy()[(items["position"].astype(int) - 1).to_numpy()]
        for item_id, t in zip(items["id"], y, strict=True):
            p.label(int(item_id), [names[t]], annotator="ana")
        result = p.train(candidates=["logistic"])
        p.promote(result.registered_version, force=True, reason="benchmark")
        champion = p.registry.by_alias("champion")
        assert champion is not None
        p.create_user("bench", "viewer")
        token = p.create_token("bench", scope="predict").token
        model_name = p.registry.name
        tracking = f"sqlite:///{(work / 'p').resolve()}/mlflow.db"
        p.close()
        row = X.iloc[0].to_dict()
        print(f"# model {model_name} v{champion.version}: {result.winner}, {X.shape[1]} columns")

        predictor = Predictor.load(champion.path)
        inproc = []
        for i in range(args.requests + 50):
            t = time.perf_counter()
            predictor.predict_frame([row])
            if i >= 50:
                inproc.append((time.perf_counter() - t) * 1000)
        floor = statistics.median(inproc)
        print(line("in-process Predictor.predict_frame (1 row)", inproc, floor))

        auth = {"Authorization": f"Bearer {token}"}
        for label, settings, ttl, inline in [
            ("labelloop", {}, 30.0, 16),
            ("labelloop, model in the threadpool", {}, 30.0, 0),
            ("labelloop, no token cache", {}, 0.0, 16),
            ("labelloop, log off", {"log_predictions": False}, 30.0, 16),
        ]:
            port = free_port()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SERVER,
                    str(work / "p"),
                    str(port),
                    json.dumps(settings),
                    str(ttl),
                    str(inline),
                    args.http,
                ]
            )
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            if not wait_for(f"{base}/ready", proc, 60):
                print(f"# {label}: the app did not start")
                continue
            if label == "labelloop":
                with httpx.Client(base_url=base) as c:
                    health = []
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        c.get("/health").raise_for_status()
                        health.append((time.perf_counter() - t) * 1000)
                print(line(f"{label} GET /health (HTTP alone)", health, 0.0))
            for path, body in [
                ("/predict", {"input": row}),
                ("/invocations", {"dataframe_records": [row]}),
            ]:
                httpx.get(f"{base}/_own")  # clear
                times, own = latency(base, path, body, auth, args.requests)
                server_own = httpx.get(f"{base}/_own").json()
                rps = throughput(base, path, body, auth, args.clients, args.seconds)
                print(line(f"{label} POST {path}", times, floor, rps, own))
                print(
                    f"{'':<48} server side alone: overhead p50 {server_own[0]:5.2f} "
                    f"p99 {server_own[1]:5.2f} ms"
                )
                if label != "labelloop":
                    break
            stop(proc)

        if args.no_mlflow:
            return
        port = free_port()
        # MLflow starts its scoring server as `uvicorn ...` by name: the venv's bin on PATH.
        bin_dir = str(Path(sys.executable).parent)
        env = os.environ | {
            "MLFLOW_TRACKING_URI": tracking,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        mlflow = shutil.which("mlflow", path=bin_dir) or "mlflow"
        log = open(work / "mlflow.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                mlflow, "models", "serve", "-m", f"models:/{model_name}@champion",
                "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        if not wait_for(f"{base}/ping", proc, 120):
            log.close()
            tail = (work / "mlflow.log").read_text()[-600:]
            print(f"# mlflow models serve did not start; skipped. Its log ends:\n{tail}")
            return
        body = {"dataframe_records": [row]}
        times, _ = latency(base, "/invocations", body, {}, args.requests)
        rps = throughput(base, "/invocations", body, {}, args.clients, args.seconds)
        print(line("mlflow models serve POST /invocations", times, floor, rps))
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
