"""Drift checks (issue 15): labelloop's profile-then-check against Evidently's DataDriftPreset.

Data, seeded and written once to ``--workdir`` as .npy files so both sides read the same bytes:

* tabular: ``--rows`` reference rows and as many current rows, ``--cols`` columns (80 % numbers
  of four shapes, 20 % categories of 3-8 values). Injected in the current rows: mean shifts
  of 0.3 sd, scale x1.6, category shares moved, one negligible 0.03 sd shift (should NOT
  drift: the point of effect-size thresholds), the rest unchanged.
* embeddings: ``--emb-rows`` 384-d Gaussian vectors as reference; current = fresh vectors from
  the same law (no drift) and fresh vectors + 0.3 sd on every dimension (drift).

Every measured step runs in its own process; peak memory is the rise of its resident set over
the step (VmHWM after ``/proc/self/clear_refs`` = 5, minus VmRSS before). labelloop: profile
once (stored as JSON), then check in a fresh process that reads only the profile and the
current rows. Evidently runs in its own virtual environment (``--evidently-python``; made by
``python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently 'pandas<3'``: Evidently
0.7.23 does not import under pandas 3). Both use normed Wasserstein / Jensen-Shannon with a
0.1 threshold at these sizes; verdicts are compared column by column.

    .venv/bin/python bench/bench_drift.py --rows 1000000 --cols 50 --emb-rows 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve()


# -- data --------------------------------------------------------------------------------------


def column_plan(cols: int) -> list[dict]:
    """What each column is and what the current rows do to it."""
    n_cat = max(1, cols // 5)
    plan = []
    for j in range(cols - n_cat):
        shape = ["normal", "lognormal", "uniform", "integer"][j % 4]
        shift = ["mean", "scale", "tiny", None, None, None, None, None][j % 8]
        plan.append({"name": f"n{j}", "kind": "num", "shape": shape, "shift": shift})
    for j in range(n_cat):
        plan.append(
            {
                "name": f"c{j}",
                "kind": "cat",
                "k": 3 + j % 6,
                "shift": "shares" if j % 3 == 0 else None,
            }
        )
    return plan


def _numbers(rng: np.random.Generator, shape: str, n: int, shift: str | None) -> np.ndarray:
    base = {
        "normal": lambda: rng.normal(10.0, 2.0, n),
        "lognormal": lambda: rng.lognormal(1.0, 0.5, n),
        "uniform": lambda: rng.uniform(-5.0, 5.0, n),
        "integer": lambda: rng.poisson(40.0, n).astype(np.float64),
    }[shape]()
    sd = float(np.std(base))
    if shift == "mean":
        return base + 0.3 * sd
    if shift == "tiny":
        return base + 0.03 * sd
    if shift == "scale":
        return base.mean() + (base - base.mean()) * 1.6
    return base


def make_data(workdir: Path, rows: int, cols: int, emb_rows: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    plan = column_plan(cols)
    nums = [c for c in plan if c["kind"] == "num"]
    cats = [c for c in plan if c["kind"] == "cat"]
    for side in ("ref", "cur"):
        num = np.empty((rows, len(nums)), dtype=np.float64)
        for j, c in enumerate(nums):
            num[:, j] = _numbers(rng, c["shape"], rows, c["shift"] if side == "cur" else None)
        cat = np.empty((rows, len(cats)), dtype=np.int8)
        for j, c in enumerate(cats):
            p = np.linspace(2.0, 1.0, c["k"])
            p /= p.sum()
            if side == "cur" and c["shift"]:
                p = p[::-1]  # the most common value becomes the rarest
            cat[:, j] = rng.choice(c["k"], rows, p=p)
        np.save(workdir / f"{side}_num.npy", num)
        np.save(workdir / f"{side}_cat.npy", cat)
    if emb_rows:
        dim = 384
        np.save(workdir / "emb_ref.npy", rng.normal(size=(emb_rows, dim)).astype(np.float32))
        np.save(workdir / "emb_same.npy", rng.normal(size=(emb_rows, dim)).astype(np.float32))
        shifted = rng.normal(size=(emb_rows, dim)).astype(np.float32) + np.float32(0.3)
        np.save(workdir / "emb_shift.npy", shifted)
    (workdir / "plan.json").write_text(json.dumps(plan))
    return plan


def load_frame(workdir: Path, side: str) -> pd.DataFrame:
    plan = json.loads((workdir / "plan.json").read_text())
    num, cat = np.load(workdir / f"{side}_num.npy"), np.load(workdir / f"{side}_cat.npy")
    nums = [c["name"] for c in plan if c["kind"] == "num"]
    cats = [c["name"] for c in plan if c["kind"] == "cat"]
    data = {name: num[:, j] for j, name in enumerate(nums)}
    for j, name in enumerate(cats):
        data[name] = pd.Series(np.array([f"v{k}" for k in range(10)], dtype=object)[cat[:, j]])
    return pd.DataFrame(data)


def expected_drift(plan: list[dict]) -> dict[str, bool]:
    return {c["name"]: c["shift"] in ("mean", "scale", "shares") for c in plan}


# -- measuring ---------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Step:
    """Wall time and the peak rise of the resident set over a block."""

    def __enter__(self) -> Step:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        self.rss0 = _status_kb("VmRSS")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.peak_mb = max(0, _status_kb("VmHWM") - self.rss0) / 1024


def emit(obj: dict) -> None:
    print("RESULT " + json.dumps(obj), flush=True)


# -- workers (each its own process) ------------------------------------------------------------


def ours_profile(workdir: Path) -> None:
    from labelloop.monitor.drift import profile_reference

    plan = json.loads((workdir / "plan.json").read_text())
    ref = load_frame(workdir, "ref")
    kinds = {c["name"]: c["kind"] for c in plan}
    with Step() as s:
        profile = profile_reference(ref, kinds=kinds)
        text = profile.to_json()
    (workdir / "profile.json").write_text(text)
    emit(
        {"step": "profile", "seconds": s.seconds, "peak_mb": s.peak_mb, "json_kb": len(text) / 1e3}
    )


def ours_check(workdir: Path) -> None:
    from labelloop.monitor.drift import ReferenceProfile, check_drift

    cur = load_frame(workdir, "cur")
    with Step() as s:
        profile = ReferenceProfile.from_json((workdir / "profile.json").read_text())
        report = check_drift(profile, cur)
    verdicts = {c.column: c.drifted for c in report.columns}
    stats = {c.column: round(c.statistic, 4) for c in report.columns}
    emit(
        {
            "step": "check",
            "seconds": s.seconds,
            "peak_mb": s.peak_mb,
            "verdicts": verdicts,
            "stats": stats,
            "dataset_drift": report.dataset_drift,
        }
    )


def ours_embeddings(workdir: Path) -> None:
    from labelloop.monitor.drift import embedding_drift

    ref = np.load(workdir / "emb_ref.npy")
    out = {}
    for name in ("same", "shift"):
        cur = np.load(workdir / f"emb_{name}.npy")
        with Step() as s:
            result = embedding_drift(ref, cur)
        out[name] = {
            "seconds": s.seconds,
            "peak_mb": s.peak_mb,
            "drifted": result.drifted,
            "auc": round(result.auc, 4),
            "mmd_p": round(result.mmd_p_value, 4),
        }
    emit({"step": "embeddings", **out})


def _evidently_run(ref: pd.DataFrame, cur: pd.DataFrame, nums: list[str], cats: list[str]):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd)
    )
    verdicts, stats, dataset = {}, {}, None
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            value, thr = float(m["value"]), float(cfg["threshold"])
            is_p_value = "p_value" in cfg["method"] or "test" in cfg["method"].lower()
            verdicts[cfg["column"]] = value < thr if is_p_value else value >= thr
            stats[cfg["column"]] = round(value, 4)
        elif cfg["type"].endswith("DriftedColumnsCount"):
            dataset = m["value"]["share"] >= cfg["drift_share"]
    return verdicts, stats, dataset


def evidently_tabular(workdir: Path) -> None:
    plan = json.loads((workdir / "plan.json").read_text())
    ref, cur = load_frame(workdir, "ref"), load_frame(workdir, "cur")
    nums = [c["name"] for c in plan if c["kind"] == "num"]
    cats = [c["name"] for c in plan if c["kind"] == "cat"]
    with Step() as s:
        verdicts, stats, dataset = _evidently_run(ref, cur, nums, cats)
    emit(
        {
            "step": "evidently_tabular",
            "seconds": s.seconds,
            "peak_mb": s.peak_mb,
            "verdicts": verdicts,
            "stats": stats,
            "dataset_drift": dataset,
        }
    )


def evidently_embeddings(workdir: Path) -> None:
    ref_v = np.load(workdir / "emb_ref.npy")
    names = [f"e{i}" for i in range(ref_v.shape[1])]
    ref = pd.DataFrame(ref_v, columns=names)
    out = {}
    for name in ("same", "shift"):
        cur = pd.DataFrame(np.load(workdir / f"emb_{name}.npy"), columns=names)
        with Step() as s:
            verdicts, _, dataset = _evidently_run(ref, cur, names, [])
        out[name] = {
            "seconds": s.seconds,
            "peak_mb": s.peak_mb,
            "drifted": bool(dataset),
            "drifted_columns": int(sum(verdicts.values())),
        }
    emit({"step": "evidently_embeddings", **out})


WORKERS = {
    "_ours_profile": ours_profile,
    "_ours_check": ours_check,
    "_ours_embeddings": ours_embeddings,
    "_evidently_tabular": evidently_tabular,
    "_evidently_embeddings": evidently_embeddings,
}


# -- driver ------------------------------------------------------------------------------------


def run_worker(python: str, mode: str, workdir: Path, timeout: float) -> dict | None:
    try:
        proc = subprocess.run(
            [python, str(HERE), mode, str(workdir)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"  {mode}: timed out after {timeout:.0f} s")
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"  {mode}: failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return None


def compare(ours: dict, theirs: dict, expected: dict[str, bool]) -> str:
    same = sum(ours[k] == theirs.get(k) for k in ours)
    right_ours = sum(ours[k] == expected[k] for k in ours)
    right_theirs = sum(theirs.get(k) == expected[k] for k in ours)
    return (
        f"verdicts equal on {same}/{len(ours)} columns; matching the injected shifts: "
        f"labelloop {right_ours}/{len(ours)}, Evidently {right_theirs}/{len(ours)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--emb-rows", type=int, default=100_000)
    parser.add_argument("--evidently-python", default="/tmp/evvenv/bin/python")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    evidently = None if args.no_evidently else args.evidently_python
    if evidently and not Path(evidently).exists():
        print(f"no Evidently environment at {evidently}: Evidently skipped")
        evidently = None

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        plan = make_data(workdir, args.rows, args.cols, args.emb_rows)
        print(f"data: {args.rows:,} x {args.cols} (ref + cur), {time.perf_counter() - t0:.1f} s")
        expected = expected_drift(plan)
        me = sys.executable
        prof = run_worker(me, "_ours_profile", workdir, args.timeout)
        check = run_worker(me, "_ours_check", workdir, args.timeout)
        ev = (
            run_worker(evidently, "_evidently_tabular", workdir, args.timeout)
            if evidently
            else None
        )
        print(f"\ntabular, {args.rows:,} rows x {args.cols} columns")
        if prof:
            print(
                f"  labelloop profile (once): {prof['seconds']:7.2f} s, peak +{prof['peak_mb']:.0f}"
                f" MB, profile JSON {prof['json_kb']:.0f} kB"
            )
        if check:
            print(
                f"  labelloop check:          {check['seconds']:7.2f} s, peak +{check['peak_mb']:.0f} MB"
            )
        if ev:
            print(
                f"  Evidently DataDriftPreset:{ev['seconds']:7.2f} s, peak +{ev['peak_mb']:.0f} MB"
            )
        if check and ev:
            print(f"  speed-up, check: {ev['seconds'] / check['seconds']:.1f}x", end="")
            if prof:
                both = prof["seconds"] + check["seconds"]
                print(f"; profile + check: {ev['seconds'] / both:.1f}x")
            print("  " + compare(check["verdicts"], ev["verdicts"], expected))
            print(
                f"  dataset drift: labelloop {check['dataset_drift']}, Evidently {ev['dataset_drift']}"
            )
            diff = [k for k in check["verdicts"] if check["verdicts"][k] != ev["verdicts"].get(k)]
            for k in diff:
                print(f"    {k}: ours {check['stats'][k]} vs Evidently {ev['stats'].get(k)}")
        elif check:
            wrong = [k for k, v in check["verdicts"].items() if v != expected[k]]
            print(f"  labelloop verdicts off the injected shifts: {wrong or 'none'}")

        if args.emb_rows:
            emb = run_worker(me, "_ours_embeddings", workdir, args.timeout)
            ev_emb = (
                run_worker(evidently, "_evidently_embeddings", workdir, args.timeout)
                if evidently
                else None
            )
            print(f"\nembeddings, {args.emb_rows:,} x 384 (reference and current)")
            for name in ("same", "shift"):
                line = f"  {name:5s}:"
                if emb:
                    e = emb[name]
                    line += (
                        f" labelloop {e['seconds']:6.2f} s, +{e['peak_mb']:.0f} MB,"
                        f" drifted={e['drifted']} (AUC {e['auc']}, MMD p {e['mmd_p']})"
                    )
                if ev_emb:
                    e = ev_emb[name]
                    line += (
                        f" | Evidently {e['seconds']:6.2f} s, +{e['peak_mb']:.0f} MB,"
                        f" drifted={e['drifted']} ({e['drifted_columns']}/384 columns)"
                    )
                print(line)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in WORKERS:
        WORKERS[sys.argv[1]](Path(sys.argv[2]))
    else:
        main()
