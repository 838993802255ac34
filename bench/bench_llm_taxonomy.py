"""The local LLM on a large taxonomy: the whole taxonomy in the prompt, or only candidates.

On banking77 (77 labels) a student is trained on ``--labels`` human labels; the same labels form
the LLM's few-shot pool. The items the student is least sure of (where the cascade would ask the
LLM) are then labeled by the bundled SmolLM2-135M in process, each way:

* the whole taxonomy (77 labels) in the prompt;
* the student's top ``k`` labels plus the few-shot examples' labels (``candidate_labels``).

Printed per setting: seconds per item, prompt tokens per item, accuracy, and how often the true
label was among the labels shown (candidate recall); the student's own accuracy on the same
items is the baseline, and the ratio of seconds per item is against the whole-taxonomy run.

Example:
    .venv/bin/python bench/bench_llm_taxonomy.py --data ../shared/data/banking77/train.csv \
        --label-col category --labels 500 --n 40 --k 5,10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _datasets import pool_and_test

from labelloop.core.hashing import content_hash
from labelloop.core.types import Item
from labelloop.embed.onnx_minilm import MiniLMEmbedder
from labelloop.labelers.llm import FewShotPool, LlamaCppClient, LLMLabeler
from labelloop.labelers.student import StudentLabeler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--test")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--labels", type=int, default=500, help="human labels (student + few-shot)")
    ap.add_argument("--n", type=int, default=40, help="items the LLM labels per setting")
    ap.add_argument("--k", default="5,10", help="candidate counts to compare")
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--skip-full", action="store_true", help="skip the whole-taxonomy run")
    args = ap.parse_args()

    pool, test = pool_and_test(args.data, args.test, args.text_col, args.label_col)
    rng = np.random.default_rng(0)
    human = pool.iloc[rng.permutation(len(pool))[: args.labels]]
    names = sorted(set(pool[args.label_col]))
    embedder = MiniLMEmbedder()
    h_texts = human[args.text_col].astype(str).tolist()
    h_labels = human[args.label_col].astype(str).tolist()
    h_vectors = embedder.embed(h_texts)
    student = StudentLabeler(names).fit(h_vectors, h_labels)
    shots = FewShotPool()
    shots.add(h_texts, h_labels, h_vectors)

    t_texts = test[args.text_col].astype(str).tolist()
    t_labels = test[args.label_col].astype(str).tolist()
    probs = student.predict_proba(embedder.embed(t_texts))
    unsure = np.argsort(probs.max(axis=1), kind="stable")[: args.n]  # the cascade's picks
    items = [Item(t_texts[i], content_hash(t_texts[i]), int(i)) for i in unsure]
    truth = [t_labels[i] for i in unsure]
    student_acc = np.mean(
        [names[int(probs[i].argmax())] == t for i, t in zip(unsure, truth, strict=True)]
    )
    print(
        f"banking77: {len(names)} labels, student on {args.labels} human labels; the {args.n} "
        f"test items it is least sure of (student accuracy on them: {student_acc:.2f})"
    )

    client = LlamaCppClient(n_threads=1)
    LLMLabeler(client, names).suggest(items[:1])  # load and warm up

    def one(name: str, candidates: list[list[str]] | None) -> float:
        labeler = LLMLabeler(client, names, fewshot=shots, embedder=embedder, n_shots=args.shots)
        start = time.perf_counter()
        results = labeler.suggest_detailed(items, candidates)
        secs = (time.perf_counter() - start) / len(items)
        ok = [(r, t) for r, t in zip(results, truth, strict=True) if r.suggestion.status == "ok"]
        acc = np.mean([r.suggestion.top_label == t for r, t in ok]) if ok else float("nan")
        recall = np.mean([t in r.label_order for r, t in ok]) if ok else float("nan")
        shown = np.mean([len(r.label_order) for r, _ in ok]) if ok else float("nan")
        tokens = labeler.usage().input_tokens / len(items)
        ratio = f"{secs / base[0]:.2f}" if base else "1.00"
        print(
            f"{name:>34} {secs:>7.2f} {ratio:>6} {tokens:>7.0f} {shown:>6.1f} "
            f"{recall:>7.2f} {acc:>5.2f} {len(ok):>4}/{len(items)}"
        )
        return secs

    print(f"{'setting':>34} {'s/item':>7} {'ratio':>6} {'tokens':>7} {'shown':>6} "
          f"{'recall':>7} {'acc':>5} {'valid':>9}")  # fmt: skip
    base: list[float] = []
    if not args.skip_full:
        base.append(one(f"whole taxonomy ({len(names)} labels)", None))
    for k in (int(x) for x in args.k.split(",")):
        top = np.argsort(-probs[unsure], axis=1, kind="stable")[:, :k]
        cands = [[names[j] for j in row] for row in top]
        secs = one(f"student's top {k} + example labels", cands)
        if not base:
            base.append(secs)


if __name__ == "__main__":
    main()
