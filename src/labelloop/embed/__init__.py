"""Embeddings: texts and images to L2-normalised float32 vectors.

``MiniLMEmbedder`` (local, offline) is the default; ``OpenAIEmbedder`` and
``SentenceTransformerEmbedder`` are the ways out; ``CachedEmbedder`` skips contents already seen.
"""

from labelloop.embed.base import Embedder, EmbeddingCache
from labelloop.embed.cached import CachedEmbedder, InMemoryEmbeddingCache
from labelloop.embed.image import (
    HandcraftedImageFeaturizer,
    ImageFeaturizer,
    ImageReadError,
    OnnxImageFeaturizer,
)
from labelloop.embed.onnx_minilm import MiniLMEmbedder
from labelloop.embed.openai_compat import EndpointError, OpenAIEmbedder
from labelloop.embed.sentence_transformers import SentenceTransformerEmbedder

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "EndpointError",
    "HandcraftedImageFeaturizer",
    "ImageFeaturizer",
    "ImageReadError",
    "InMemoryEmbeddingCache",
    "MiniLMEmbedder",
    "OnnxImageFeaturizer",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
]
