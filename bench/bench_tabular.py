"""Tables (issue 12, item 1): human labels a tabular project needs to reach 90% of full
supervision, with the loop's queue (active learning) against random sampling.

For scikit-learn's bundled wine and breast-cancer tables (no download), with 10% of the cells
blanked out: 30% of the rows are held out as a test set; the rest are ingested into a tabular
project (``content_fields: ["*"]``, features from ``embed/tabular.py``). Two simulated
reviewers who always give the dataset's label then work through the pool:

* ``loop``: takes ``next_item`` from the project's queue (cold start, then active learning),
  with ``FeedbackLoop`` retraining every ``--step`` labels;
* ``random``: labels rows in a random order, same retrains.

After each retrain the project's labelers predict the test rows; the figure is the number of
labels at which macro-F1 first reaches 90% of full supervision (a plain scikit-learn pipeline,
median imputation + scaling + logistic regression, trained on every pool row's label). The
ratio loop / random is the figure to compare between runs.

    .venv/bin/python bench/bench_tabular.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DATASETS = {"wine": load_wine, "breast_cancer": load_breast_cancer}


def load(name: str, missing: float, seed: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    d = DATASETS[name](as_frame=True)
    X = d.data.copy()
    X.columns = [str(c).replace(" ", "_").replace("/", "_") for c in X.columns]
    X = X.mask(np.random.default_rng(seed).random(X.shape) < missing)
    return X, d.target.to_numpy(), [str(n).replace(" ", "_") for n in d.target_names]


def run(name: str, strategy: str, seed: int, args: argparse.Namespace, work: Path) -> dict:
    from labelloop.annotate.feedback import FeedbackLoop
    from labelloop.embed.factory import project_embedder
    from labelloop.project import Project

    X, y, names = load(name, args.missing, seed)
    X_pool, X_test, y_pool, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    full = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=5000)
    ).fit(X_pool, y_pool)
    full_f1 = f1_score(y_test, full.predict(X_test), average="macro")
    csv = work / f"{name}-{strategy}-{seed}.csv"
    X_pool.assign(row_id=np.arange(len(X_pool))).to_csv(csv, index=False)
    folder = work / f"{name}-{strategy}-{seed}"
    p = Project.init(
        folder,
        name=name,
        labels=names,
        modality="tabular",
        content_fields=["*"],
        id_field="row_id",
        storage=f"sqlite:///{folder}.db",
        loop={"retrain_every": args.step},
    )
    try:
        p.ingest(csv)
        items = p.items()
        # position: the row's line in the CSV (1-based), so its index in y_pool
        row_of = dict(zip(items["id"], items["position"].astype(int) - 1, strict=True))
        test_rows = [
            json.dumps({k: (None if pd.isna(v) else float(v)) for k, v in r.items()})
            for r in X_test.to_dict("records")
        ]
        loop = FeedbackLoop(p, retrain_every=args.step, select_every=0, update_every=0)
        loop.step()
        order = list(np.random.default_rng(seed).permutation(list(row_of)))
        curve: list[tuple[int, float]] = []
        done = 0
        dry = False  # the loop's queue ran dry (machines labeled the rest)
        while done < args.budget and not dry:
            for _ in range(args.step):
                if strategy == "loop":
                    item = p.next_item("sim")
                    if item is None:
                        dry = True
                        break
                    item_id = int(item["id"])
                    p.submit(item_id, [names[int(y_pool[row_of[item_id]])]], annotator="sim")
                else:
                    item_id = int(order.pop())
                    p.label(item_id, [names[int(y_pool[row_of[item_id]])]], annotator="sim")
                done += 1
            loop.step()
            vectors = project_embedder(p.ctx).embed(test_rows)
            _, probs, _ = p.labelers().probs(vectors)
            curve.append((done, f1_score(y_test, probs.argmax(axis=1), average="macro")))
    finally:
        p.close()
    reach = next((n for n, f in curve if f >= 0.9 * full_f1), None)
    return {"full": full_f1, "curve": curve, "labels_to_90": reach}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="wine,breast_cancer")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=120)
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--missing", type=float, default=0.1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labelloop-tabular-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        "| dataset | seed | full supervision macro-F1 | loop: labels to 90% | random: labels to 90% | loop F1 at 50 | random F1 at 50 |"
    )
    print("|---|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {}
    for name in args.datasets.split(","):
        for seed in seeds:
            t0 = time.perf_counter()
            loop = run(name, "loop", seed, args, work)
            rand = run(name, "random", seed, args, work)
            at50 = {k: dict(r["curve"]).get(50) for k, r in (("loop", loop), ("random", rand))}
            print(
                f"| {name} | {seed} | {loop['full']:.3f} | {loop['labels_to_90']} | "
                f"{rand['labels_to_90']} | {at50['loop']:.3f} | {at50['random']:.3f} |",
                flush=True,
            )
            if loop["labels_to_90"] and rand["labels_to_90"]:
                totals.setdefault(name, []).append(loop["labels_to_90"] / rand["labels_to_90"])
            print(f"<!-- {name} seed {seed}: {time.perf_counter() - t0:.0f} s -->", flush=True)
    for name, ratios in totals.items():
        print(
            f"{name}: loop / random labels to 90% = {np.mean(ratios):.2f} (mean over {len(ratios)} seeds)"
        )
    print(
        "reproduce: .venv/bin/python bench/bench_tabular.py "
        f"--datasets {args.datasets} --seeds {args.seeds} --budget {args.budget} "
        f"--step {args.step} --missing {args.missing}"
    )


if __name__ == "__main__":
    main()
