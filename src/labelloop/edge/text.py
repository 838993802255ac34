"""MiniLM sentence vectors on the device, computed exactly as the server computes them.

A copy of the few steps of ``labelloop.embed.onnx_minilm`` (the runtime imports no other
labelloop module, so a device needs only numpy, onnxruntime and tokenizers): truncation at
``max_tokens``, padding per batch to the batch's longest item, batches of items sorted by
token count, mean pooling over real tokens, L2 normalisation. Batching is copied too, not only
the pooling: the int8 model quantises its activations per batch, so the same text in another
batch gives slightly different numbers (about 1e-3), and the bundle must answer what the
server's ``Predictor`` answers. ``tests/test_edge.py`` pins the equality.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

CHUNK_SIZE = 8192  # texts sorted and batched together at most (as the server's embedder)


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def pad_batch(encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
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


def pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the non-padding token vectors, scaled to unit length, float32."""
    mask = attention_mask.astype(np.float32)
    summed = np.einsum("bld,bl->bd", hidden, mask)
    vectors = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def batch_spans(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int
) -> list[tuple[int, int]]:
    """(start, stop) per batch: at most ``batch_size`` rows and, padded, ``max_batch_tokens``."""
    spans, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        longest_with = max(longest, n)
        rows = i - start + 1
        if i > start and (rows > batch_size or rows * longest_with > max_batch_tokens):
            spans.append((start, i))
            start, longest_with = i, n
        longest = longest_with
    if start < len(lengths):
        spans.append((start, len(lengths)))
    return spans


class TextEmbedder:
    """The bundle's embedding model and tokenizer, one onnxruntime session."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        max_tokens: int = 256,
        batch_size: int = 64,
        max_batch_tokens: int = 512,
        threads: int = 1,
    ) -> None:
        self.tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.session = ort.InferenceSession(
            str(model_path),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self._output = self.session.get_outputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), CHUNK_SIZE):
            chunk = list(texts[start : start + CHUNK_SIZE])
            out[start : start + len(chunk)] = self._embed_chunk(chunk)
        return out

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort(np.asarray([len(e.ids) for e in encodings]), kind="stable")
        lengths = [len(encodings[i].ids) for i in order]
        for start, stop in batch_spans(lengths, self.batch_size, self.max_batch_tokens):
            rows = order[start:stop]
            inputs = pad_batch([encodings[i] for i in rows])
            (hidden,) = self.session.run([self._output], inputs)
            out[rows] = pooled(hidden, inputs["attention_mask"])
        return out


def session_options(threads: int) -> ort.SessionOptions:
    """One thread by default: a device runs other things, and one core answers a short text
    in a few milliseconds (bench/bench_edge.py)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options
