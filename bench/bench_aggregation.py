"""Agreement and aggregation on real per-annotator labels (ConvAbuse by default).

Computes Cohen's kappa for the annotator pairs who share the most items, Fleiss' kappa and
Krippendorff's alpha, then aggregates with majority vote (the baseline) and Dawid-Skene and
compares both with the dataset's own majority label.

    .venv/bin/python bench/bench_aggregation.py --data /work/shared/data/convabuse
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from labelloop.quality import (
    aggregate_dawid_skene,
    agreement_report,
    cohen_kappa,
    majority_vote,
)

ABUSIVE, NOT_ABUSIVE = "abusive", "not_abusive"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with the two CSV files")
    parser.add_argument("--annotations", default="annotations_long.csv")
    parser.add_argument("--items", default="items.csv")
    parser.add_argument("--item-col", default="item_id")
    parser.add_argument("--annotator-col", default="annotator_id")
    parser.add_argument("--label-col", default="is_abuse", help="numeric; < 0 means abusive")
    parser.add_argument("--reference-col", default="majority_binary")
    parser.add_argument("--top-pairs", type=int, default=8)
    parser.add_argument("--smoothing", type=float, default=0.1)
    parser.add_argument("--n-boot", type=int, default=200)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ann = pd.read_csv(args.data / args.annotations)
    items = pd.read_csv(args.data / args.items).set_index(args.item_col)
    long = pd.DataFrame(
        {
            "item_id": ann[args.item_col],
            "annotator_id": ann[args.annotator_col],
            "label": np.where(ann[args.label_col] < 0, ABUSIVE, NOT_ABUSIVE),
            "level": ann[args.label_col],
        }
    )
    labels = [NOT_ABUSIVE, ABUSIVE]
    n_per_item = long.groupby("item_id").size()
    print(
        f"data: {args.data} | {long.item_id.nunique()} items, {len(long)} annotations, "
        f"{long.annotator_id.nunique()} annotators, {n_per_item.mean():.2f} per item "
        f"| abusive share of annotations {np.mean(long.label == ABUSIVE):.3f}"
    )

    # --- agreement ------------------------------------------------------------------------
    t0 = time.perf_counter()
    report = agreement_report(long, labels=labels, min_shared=1, n_boot=args.n_boot)
    five = agreement_report(long, label_col="level", min_shared=1, n_boot=0)
    t_agree = time.perf_counter() - t0
    print(f"\n== agreement (binary: abusive if {args.label_col} < 0) ==")
    print(
        f"measured on {report.n_items_multi} items with >= 2 ratings "
        f"(of {report.n_items}); computed in {t_agree:.2f}s"
    )
    print(f"observed pairwise agreement  {report.observed_agreement:.3f}")
    print(f"Fleiss' kappa                {report.fleiss_kappa:.3f}")
    lo, hi = report.krippendorff_alpha_ci
    print(
        f"Krippendorff's alpha         {report.krippendorff_alpha:.3f} "
        f"(95% bootstrap over items {lo:.3f}-{hi:.3f})"
    )
    print(f"Krippendorff's alpha, 5 levels as nominal  {five.krippendorff_alpha:.3f}")
    print(f"Fleiss' kappa, 5 levels                    {five.fleiss_kappa:.3f}")
    print(f"\nCohen's kappa, the {args.top_pairs} pairs sharing the most items:")
    print(report.pairwise.head(args.top_pairs).to_string(index=False, float_format="%.3f"))
    pw = report.pairwise[report.pairwise.n_shared >= 50]
    print(
        f"pairs with >= 50 shared items: {len(pw)}, kappa median {pw.kappa.median():.3f}, "
        f"range {pw.kappa.min():.3f}-{pw.kappa.max():.3f}"
    )

    # --- aggregation ----------------------------------------------------------------------
    t0 = time.perf_counter()
    mv = majority_vote(long, labels=labels, tie_break="prevalence")
    t_mv = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = aggregate_dawid_skene(long, labels=labels, smoothing=args.smoothing)
    t_ds = time.perf_counter() - t0
    ref = items.loc[mv.index, args.reference_col].to_numpy()
    methods = {"majority vote (baseline)": mv["label"], "Dawid-Skene": ds.items["label"]}
    rows = []
    for name, pred in methods.items():
        p = pred.to_numpy()
        rows.append(
            {
                "method": name,
                f"agree w/ {args.reference_col}": float(np.mean(p == ref)),
                "n_differ": int(np.sum(p != ref)),
                "kappa vs ref": cohen_kappa(p, ref),
                "abusive share": float(np.mean(p == ABUSIVE)),
            }
        )
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["agree ratio vs MV"] = table.iloc[:, 1] / base.iloc[1]
    table["seconds"] = [t_mv, t_ds]
    print("\n== aggregation vs the dataset's majority label ==")
    print(table.to_string(index=False, float_format="%.4f"))
    print(
        f"Dawid-Skene: {ds.result.n_iter} EM iterations, converged={ds.result.converged}, "
        f"class prior abusive={ds.result.priors[1]:.3f}; time ratio DS/MV {t_ds / t_mv:.1f}x"
    )

    differ = mv["label"] != ds.items["label"]
    print(
        f"\nMV and DS disagree on {int(differ.sum())} items "
        f"({differ.mean():.2%}); {int(mv['tied'].sum())} items are MV ties "
        f"(broken toward {NOT_ABUSIVE}, the more frequent label), "
        f"{int((differ & mv['tied']).sum())} of the disagreements are ties"
    )
    votes = long.assign(ab=long.label == ABUSIVE).groupby("item_id")["ab"].agg(["sum", "size"])
    split = votes.loc[differ[differ].index]
    split_counts = (split["sum"].astype(str) + "/" + split["size"].astype(str)).value_counts()
    print(
        "abusive votes / votes on those items:",
        {k: int(v) for k, v in split_counts.head(8).items()},
    )
    print(
        "DS label on them:",
        {k: int(v) for k, v in ds.items.loc[differ, "label"].value_counts().items()},
        "| single-annotator items:",
        int((mv["n_votes"] == 1).sum()),
    )

    # --- annotators -----------------------------------------------------------------------
    mv_of_row = long["item_id"].map(mv["label"])
    ref_of_row = long["item_id"].map(items[args.reference_col])
    per = (
        long.assign(
            agree_mv=long.label.to_numpy() == mv_of_row.to_numpy(),
            agree_ref=long.label.to_numpy() == ref_of_row.to_numpy(),
            abusive=long.label == ABUSIVE,
        )
        .groupby("annotator_id")[["agree_mv", "agree_ref", "abusive"]]
        .mean()
    )
    annot = ds.annotators.join(per)
    annot = annot.rename(
        columns={
            "accuracy": "DS accuracy",
            f"recall_{ABUSIVE}": "DS recall abusive",
            f"recall_{NOT_ABUSIVE}": "DS recall not",
            "agree_mv": "agree w/ MV",
            "agree_ref": f"agree w/ {args.reference_col}",
            "abusive": "abusive share",
        }
    ).sort_values("DS accuracy", ascending=False)
    print("\n== annotators (Dawid-Skene estimates; agreement includes their own vote) ==")
    print(annot.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
