"""Does appending hashed character n-grams to the sentence embedding help the student?

    python bench/bench_char_ngrams.py --data ../shared/data/youtube_spam/youtube_spam.csv \\
        --budgets 200,400,1000

For each budget, three random draws of that many labeled items from four fifths of the data;
logistic regression (the student's default, C=100) on MiniLM vectors, and on MiniLM vectors
with ``--features`` hashed character n-gram features appended (``embed.char_ngrams``,
``embedding.char_ngrams`` in a project); accuracy and macro-F1 on the held-out fifth, and the
error ratio (with / without). Both feature sets are scored on the same draws in the same run.

``--choose``: also, on each draw, pick the view as a project could from its labels alone (5-fold
cross-validated log-loss of the same student, all labels random as in the calibration sample);
report how often n-grams are chosen and the held-out accuracy of the chosen view.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from labelloop.edge.char_ngrams import char_ngram_vectors as edge_char_ngram_vectors
from labelloop.embed.char_ngrams import char_ngram_vectors
from labelloop.embed.onnx_minilm import MiniLMEmbedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--budgets", default="200,400,1000")
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--max-items", type=int, default=6000, help="a random subset this large")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--choose", action="store_true", help="also choose the view by CV log-loss")
    args = ap.parse_args()

    df = pd.read_csv(args.data).dropna(subset=[args.text_col, args.label_col])
    if len(df) > args.max_items:
        df = df.sample(args.max_items, random_state=0)
    texts = df[args.text_col].astype(str).tolist()
    y = df[args.label_col].astype(str).to_numpy()
    started = time.perf_counter()
    dense = MiniLMEmbedder().embed(texts)
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    chars = char_ngram_vectors(texts, args.features)
    chars_s = time.perf_counter() - started
    started = time.perf_counter()
    device = edge_char_ngram_vectors(texts, args.features)  # plain Python, as on a device
    device_s = time.perf_counter() - started
    assert np.allclose(device, chars, atol=1e-6), "the device's n-grams differ from the server's"
    views = {"minilm": dense, "minilm+chars": np.hstack([dense, chars]) / np.sqrt(2.0)}
    perm = np.random.default_rng(0).permutation(len(df))
    test, train = perm[: len(df) // 5], perm[len(df) // 5 :]
    print(
        f"{args.data}: {len(df)} items, {len(np.unique(y))} labels; {len(test)} held out. "
        f"MiniLM {embed_s:.1f} s, char n-grams ({args.features}) {chars_s:.2f} s "
        f"(the edge runtime's plain-Python hashing: {device_s:.2f} s, ratio {device_s / chars_s:.1f})"
    )
    budgets = [int(b) for b in args.budgets.split(",")] + [len(train)]
    rows = []
    for n in budgets:
        for draw in range(args.draws if n < len(train) else 1):
            idx = np.random.default_rng(draw).choice(train, min(n, len(train)), replace=False)
            scored = {}
            for name, x in views.items():
                model = LogisticRegression(C=100.0, max_iter=3000).fit(x[idx], y[idx])
                pred = model.predict(x[test])
                scored[name] = {
                    "labels": len(idx),
                    "features": name,
                    "accuracy": accuracy_score(y[test], pred),
                    "macro_f1": f1_score(y[test], pred, average="macro"),
                }
                rows.append(scored[name])
            if args.choose and n < len(train):
                cv = {name: cv_log_loss(x[idx], y[idx]) for name, x in views.items()}
                pick = min(cv, key=cv.__getitem__)
                rows.append({**scored[pick], "features": "chosen", "chose_chars": pick != "minilm"})
    table = pd.DataFrame(rows).groupby(["labels", "features"]).mean().unstack("features")
    error = 1 - table["accuracy"]
    table[("error ratio", "with / without")] = error["minilm+chars"] / error["minilm"]
    if args.choose:
        table[("error ratio", "chosen / without")] = error["chosen"] / error["minilm"]
    print(table.round(3).to_string())


def cv_log_loss(x: np.ndarray, y: np.ndarray) -> float:
    from labelloop.learn.selection import cross_val_scores, make_folds

    folds = make_folds(y, cv=5, seed=0)
    make = lambda: LogisticRegression(C=100.0, max_iter=3000)  # noqa: E731
    return cross_val_scores(make, x, y, folds).log_loss


if __name__ == "__main__":
    main()
