"""Model training with tuning (issue 14, items 1-4): time to the chosen model and its test
score against an untuned logistic regression.

10,000 rows from scikit-learn's make_classification (3 classes, 20 features of which 8
informative, non-linear interactions added, 5% missing values and 1% outliers injected), a
stratified 80/20 split. Both models get the same preparation pipeline (labelloop.mlops.prepare).
The tuned run is labelloop.mlops.select.select_model: every candidate's defaults by K-fold
cross-validation, then Optuna on the two best until the budget (counted from the start)
is spent, the winner refitted on all
training rows.

    .venv/bin/python bench/bench_train.py --rows 10000 --budget-seconds 120 --trials 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from labelloop.mlops.prepare import build_preprocessor, infer_kinds
from labelloop.mlops.select import make_estimator, select_model


def data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(
        rows, 20, n_informative=8, n_redundant=4, n_classes=3, class_sep=0.8, random_state=seed
    )
    rng = np.random.default_rng(seed)
    # Interactions a linear model cannot see: the label also follows the sign of a product.
    flip = (X[:, 0] * X[:, 1] > 0.5) & (rng.random(rows) < 0.5)
    y = np.where(flip, (y + 1) % 3, y)
    out = rng.random(X.shape) < 0.01
    X[out] *= 100
    X[rng.random(X.shape) < 0.05] = np.nan
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]), y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--budget-seconds", type=float, default=120.0)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--folds", type=int, default=3)
    args = ap.parse_args()
    X, y = data(args.rows)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    prep = build_preprocessor(infer_kinds(X))

    start = time.perf_counter()
    base = Pipeline([("prepare", clone(prep)), ("model", LogisticRegression(max_iter=2000))])
    base.fit(Xtr, ytr)
    base_s = time.perf_counter() - start
    base_f1 = f1_score(yte, base.predict(Xte), average="macro")

    start = time.perf_counter()
    sel = select_model(
        prep, Xtr, ytr, folds=args.folds, trials=args.trials, budget_seconds=args.budget_seconds
    )
    best = sel.best
    with threadpool_limits(1):
        model = Pipeline(
            [
                ("prepare", clone(prep)),
                ("model", make_estimator(best.candidate, "classification", best.params)),
            ]
        ).fit(Xtr, ytr)
    tuned_s = time.perf_counter() - start
    tuned_f1 = f1_score(yte, model.predict(Xte), average="macro")

    defaults = {t.candidate: t for t in sel.trials if not t.params}
    print(
        f"rows {args.rows}, budget {args.budget_seconds:.0f} s, trials {args.trials}, folds {args.folds}"
    )
    print("| candidate | cv macro-F1 (defaults) | seconds |")
    for name, t in defaults.items():
        print(f"| {name} | {t.score:.4f} | {t.seconds:.1f} |")
    tuned = len(sel.trials) - len(defaults)
    print(f"tuning trials run: {tuned}; best: {best.candidate} {best.params} cv {best.score:.4f}")
    print("| model | test macro-F1 | seconds to the model |")
    print(f"| untuned logistic regression | {base_f1:.4f} | {base_s:.1f} |")
    print(f"| selected + tuned ({best.candidate}) | {tuned_f1:.4f} | {tuned_s:.1f} |")


if __name__ == "__main__":
    main()
