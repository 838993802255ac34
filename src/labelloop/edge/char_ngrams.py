"""Hashed character n-grams on the device, the same numbers the server's scikit-learn gives.

A model trained with ``embedding.char_ngrams: N`` reads MiniLM vectors with N hashed character
2-5-gram features appended (``labelloop.embed.char_ngrams``). The server hashes with
scikit-learn's ``HashingVectorizer``; the device has no scikit-learn, so this module copies the
few steps it takes, in plain Python: runs of whitespace become one space; each lowercased word,
padded with a space on both sides, gives its 2- to 5-character substrings (once it has given
itself whole, it stops); each n-gram's UTF-8 bytes are hashed with 32-bit MurmurHash3 (seed 0,
signed) into ``abs(hash) % N``; counts are damped as log(1 + count) and the row scaled to unit
length. ``tests/test_edge.py`` pins the equality with scikit-learn.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np

NGRAM_RANGE = (2, 5)
_WHITE_SPACES = re.compile(r"\s\s+")
_MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``data``, as a signed int (scikit-learn's ``positive=False``)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK
    n = len(data)
    end = n - n % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = _rotl((k * c1) & _MASK, 15)
        h ^= (k * c2) & _MASK
        h = (_rotl(h, 13) * 5 + 0xE6546B64) & _MASK
    k = 0
    for j, b in enumerate(data[end:]):
        k |= b << (8 * j)
    if n % 4:
        h ^= (_rotl((k * c1) & _MASK, 15) * c2) & _MASK
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


@lru_cache(maxsize=1 << 16)
def _column(ngram: str, n_features: int) -> int:
    h = murmurhash3_32(ngram.encode("utf-8"))
    if h == -(1 << 31):  # abs() overflows int32 in scikit-learn's C code; it special-cases it
        return (2**31 - 1 - (n_features - 1)) % n_features
    return abs(h) % n_features


def char_wb_ngrams(text: str) -> Iterator[str]:
    """Character 2-5-grams within words, as scikit-learn's ``analyzer="char_wb"``."""
    low, high = NGRAM_RANGE
    for word in _WHITE_SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(low, high + 1):
            for offset in range(max(len(w) - n, 0) + 1):
                yield w[offset : offset + n]
            if len(w) <= n:  # the word (padded) gave itself whole: longer n add nothing
                break


def char_ngram_vectors(texts: Sequence[str], n_features: int) -> np.ndarray:
    """float32 (len(texts), n_features): log(1 + count) of each hashed n-gram, unit rows."""
    out = np.zeros((len(texts), n_features), dtype=np.float32)
    for row, text in enumerate(texts):
        counts = Counter(_column(g, n_features) for g in char_wb_ngrams(text))
        if not counts:
            continue
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        values = np.log1p(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        out[row, cols] = values / np.float32(math.sqrt(float(values @ values)))
    return out


def with_char_ngrams(dense: np.ndarray, texts: Sequence[str], n_features: int) -> np.ndarray:
    """The sentence vectors with the n-gram features appended, the whole a unit vector."""
    chars = char_ngram_vectors(texts, n_features)
    return (np.hstack([dense, chars]) / np.float32(math.sqrt(2.0))).astype(np.float32)
