"""A text embedder's vectors with hashed character n-grams appended (``embedding.char_ngrams``).

Why: a sentence embedding blurs the surface cues some tasks turn on (a URL, "check out my
channel", "FREE", a phone number), and a linear student on it misses them. Appending a
bag of character n-grams lets the same student see both. Measured with random labels and
logistic regression (``bench/bench_char_ngrams.py``, docs/benchmarks.md): on youtube_spam the
error at 200 / 400 / 1,000 labels fell from 0.107 / 0.090 / 0.080 to 0.076 / 0.077 / 0.059,
on SMS spam at 400 labels from 0.025 to 0.020; on banking77 (77 intents, meaning over words)
it rose (0.144 to 0.153 at 1,000 labels). So it is a project setting, off by default.

The n-grams are hashed (scikit-learn's ``HashingVectorizer``): no vocabulary is fitted, so the
same text gets the same vector in every process, worker and deployed model, and a project's
vectors never go stale as items arrive. Each part is L2-normalised and the two are weighted
equally, so the whole vector is a unit vector and a cosine over it is the mean of the two
parts' cosines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from labelloop.embed.base import Embedder

NGRAM_RANGE = (2, 5)  # characters, within word boundaries ("char_wb")


def char_ngram_vectors(texts: Sequence[str], n_features: int) -> np.ndarray:
    """Hashed counts of each text's character 2-5-grams (within words, padded by a space),
    damped as log(1 + count) and L2-normalised: float32, shape (len(texts), n_features). A text
    with no characters gets a zero row."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    if n_features < 1:
        raise ValueError(f"n_features={n_features}: expected at least 1")
    if not len(texts):
        return np.zeros((0, n_features), dtype=np.float32)
    hashed = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAM_RANGE,
        n_features=n_features,
        alternate_sign=False,
        norm=None,
        lowercase=True,
        dtype=np.float32,
    ).transform(list(texts))
    hashed.data = np.log1p(hashed.data)
    return np.asarray(normalize(hashed).toarray(), dtype=np.float32)


def with_char_ngrams(dense: np.ndarray, texts: Sequence[str], n_features: int) -> np.ndarray:
    """Sentence vectors ``dense`` (unit rows) with the texts' n-grams appended, the whole a unit
    vector: what :class:`WithCharNgrams` gives, from vectors already at hand."""
    chars = char_ngram_vectors(texts, n_features)
    return np.hstack([np.asarray(dense, dtype=np.float32), chars]) / np.float32(math.sqrt(2.0))


def sentence_part(vectors: np.ndarray, n_features: int) -> np.ndarray:
    """The unit sentence vectors inside :func:`with_char_ngrams`'s output (its inverse)."""
    return np.asarray(vectors, dtype=np.float32)[:, : vectors.shape[1] - n_features] * np.float32(
        math.sqrt(2.0)
    )


def char_ngrams_in(model_id: str) -> tuple[str, int]:
    """(the inner embedder's id, the n-gram features) of a :class:`WithCharNgrams` model id;
    (``model_id``, 0) for any other embedder."""
    match = re.fullmatch(r"(.+)\+chars(\d+)", model_id)
    return (match.group(1), int(match.group(2))) if match else (model_id, 0)


class WithCharNgrams:
    """``inner``'s vectors, then ``n_features`` hashed character n-gram features, each part a
    unit vector, the whole scaled to unit length.

    >>> emb = WithCharNgrams(MiniLMEmbedder(), 1024)
    >>> emb.embed(["check out my channel"]).shape
    (1, 1408)
    """

    def __init__(self, inner: Embedder, n_features: int = 1024) -> None:
        if n_features < 1:
            raise ValueError(f"n_features={n_features}: expected at least 1")
        self.inner = inner
        self.n_features = int(n_features)
        self.model_id = f"{inner.model_id}+chars{self.n_features}"
        self.dim = int(inner.dim) + self.n_features

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return with_char_ngrams(self.inner.embed(texts), texts, self.n_features)
