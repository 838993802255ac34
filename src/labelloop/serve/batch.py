"""Batch prediction over a file: CSV, JSON Lines or Parquet in, the same formats out.

The input is read in batches (pandas' CSV and JSON Lines chunk readers, Parquet row batches
from ``pyarrow.parquet.ParquetFile.iter_batches``), each batch is scored and appended to the
output, so memory stays that of one batch whatever the file's size. The output holds every
input column, then ``label`` and ``confidence`` (``value`` for regression; ``p_<label>`` per
class with ``probabilities=True``). An output name the input already uses (a ``label`` column
of ground truth, say) gets ``_predicted`` appended, so no input column is lost.

The output is written to a temporary file beside the target and renamed at the end: a run
that fails leaves no half-written output.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from labelloop.core.errors import LabelloopError
from labelloop.core.progress import Progress
from labelloop.mlops.predictor import Predictor

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass
class BatchSummary:
    """What a batch prediction did."""

    input: str
    output: str
    format_in: str
    format_out: str
    rows: int
    batches: int
    seconds: float
    columns: dict[str, str]  # output name -> the output column it was written as
    label_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LabelloopError(
            f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return fmt


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int = 1000,
    probabilities: bool = False,
    progress: Progress | None = None,
) -> BatchSummary:
    """Score every row of ``input_path`` and write them with their predictions to
    ``output_path`` (format by suffix: .csv, .jsonl/.ndjson, .parquet)."""
    src, dst = Path(input_path), Path(output_path)
    if batch_size < 1:
        raise LabelloopError(f"batch_size is at least 1, not {batch_size}")
    fmt_in, fmt_out = file_format(src), file_format(dst)
    if not src.is_file():
        raise LabelloopError(f"{src}: no such file")
    if dst.resolve() == src.resolve():
        raise LabelloopError(f"{dst}: the output would overwrite the input; choose another path")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    start = time.perf_counter()
    total = _row_count(src, fmt_in)
    done = batches = 0
    labels: Counter[str] = Counter()
    names: dict[str, str] = {}
    writer = _Writer(tmp, fmt_out)
    try:
        for chunk in _read(src, fmt_in, batch_size):
            if chunk.empty:
                continue
            pred = predictor.predict_frame(chunk)
            if not probabilities:
                pred = pred[[c for c in pred.columns if not c.startswith("p_")]]
            if not names:
                names = {c: (f"{c}_predicted" if c in chunk.columns else c) for c in pred.columns}
            pred = pred.rename(columns=names)
            out = pd.concat([chunk.reset_index(drop=True), pred.reset_index(drop=True)], axis=1)
            writer.write(out)
            if "label" in names:
                labels.update(pred[names["label"]].astype(str).tolist())
            done += len(chunk)
            batches += 1
            if progress is not None:
                progress(done, total)
        writer.close()
        os.replace(tmp, dst)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return BatchSummary(
        str(src),
        str(dst),
        fmt_in,
        fmt_out,
        done,
        batches,
        time.perf_counter() - start,
        names,
        dict(labels),
    )


def _row_count(path: Path, fmt: str) -> int | None:
    """Parquet says its row count in the footer; text files would need a pass: unknown."""
    if fmt != "parquet":
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _read(path: Path, fmt: str, batch_size: int) -> Iterator[pd.DataFrame]:
    try:
        if fmt == "csv":
            with pd.read_csv(path, chunksize=batch_size) as reader:
                yield from reader
        elif fmt == "jsonl":
            # dtype=False: values as the JSON has them (no guessing of dates or numbers).
            with pd.read_json(path, lines=True, chunksize=batch_size, dtype=False) as reader:
                yield from reader
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                yield batch.to_pandas()
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelloopError(f"{path}: cannot read it as {fmt}: {exc}") from None


class _Writer:
    """Appends frames to one file; Parquet keeps the first batch's schema for every batch."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._parquet: Any = None
        self._file: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                # A column empty in the first batch has no type yet: call it text.
                schema = pa.schema(
                    [
                        f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                        for f in table.schema
                    ],
                    metadata=table.schema.metadata,
                )
                self._parquet = pq.ParquetWriter(self.path, schema)
            try:
                table = pa.Table.from_pandas(
                    frame, schema=self._parquet.schema, preserve_index=False
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise LabelloopError(
                    f"a column changes type between batches ({exc}); use a larger batch "
                    "size or write CSV or JSON Lines"
                ) from None
            self._parquet.write_table(table)
            return
        if self._file is None:
            self._file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            if self.fmt == "csv":
                frame.to_csv(self._file, index=False)
                return
        if self.fmt == "csv":
            frame.to_csv(self._file, index=False, header=False)
        else:
            # pandas ends JSON Lines with a newline, so batches append cleanly.
            frame.to_json(self._file, orient="records", lines=True, force_ascii=False)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._file is not None:
            self._file.close()
            self._file = None
