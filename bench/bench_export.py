"""Export speed and peak memory: streamed export_labels vs Project.final_labels() + pandas.

usage: python bench_export.py build DIR N        (once: a project with N labeled items)
       python bench_export.py run DIR WHAT       (WHAT: csv|jsonl|parquet|pandas-csv|pandas-parquet|ls)
"""

import json
import random
import resource
import sys
import time
from pathlib import Path

from labelloop.project import Project


def build(folder: Path, n: int) -> None:
    p = Project.init(
        folder, name="bench", labels=["ham", "spam", "promo"], overwrite=True, label_field="label"
    )
    src = folder / "src.jsonl"
    rnd = random.Random(0)
    with open(src, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "text": f"message {i} " + "lorem ipsum " * rnd.randint(2, 12),
                        "label": rnd.choice(["ham", "spam"]),
                        "n": i,
                        "w": rnd.random(),
                        "user": f"u{i % 977}",
                    }
                )
                + "\n"
            )
    p.ingest(src)
    from labelloop.store.labels import set_final_labels

    ids = p.items()["id"].tolist()
    with p.db.engine.begin() as conn:
        for s in range(0, len(ids), 20000):
            set_final_labels(
                conn,
                [
                    {
                        "project_id": p.id,
                        "item_id": i,
                        "labels": [rnd.choice(["ham", "spam"])],
                        "source_kind": "machine" if i % 3 else "human",
                        "source_name": "student" if i % 3 else "alice",
                        "source_version": "v1" if i % 3 else None,
                        "confidence": rnd.random() if i % 3 else None,
                    }
                    for i in ids[s : s + 20000]
                ],
            )


def run(folder: Path, what: str) -> None:
    from labelloop.interop import export_label_studio, export_labels

    p = Project.open(folder)
    t = time.perf_counter()
    if what in ("csv", "jsonl", "parquet"):
        s = export_labels(p, folder / f"out.{what}")
        rows = s.rows
    elif what == "ls":
        rows = export_label_studio(p, folder / "out.ls.json").rows
    else:
        df = p.final_labels()
        meta = __import__("pandas").json_normalize(df.pop("meta").tolist())
        df = df.join(meta, rsuffix="_meta")
        df["labels"] = df["labels"].str.join("|") if what == "pandas-csv" else df["labels"]
        (
            df.to_csv(folder / "b.csv", index=False)
            if what == "pandas-csv"
            else df.to_parquet(folder / "b.parquet")
        )
        rows = len(df)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{what:15s} rows={rows} seconds={dt:.2f} rows/s={rows / dt:,.0f} peak_rss_MB={rss:.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        run(Path(sys.argv[2]), sys.argv[3])
