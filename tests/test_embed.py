"""Embedders: the local MiniLM model, the OpenAI-compatible client, the cache wrapper, images."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.core.hashing import content_hash
from labelloop.embed import (
    CachedEmbedder,
    Embedder,
    EndpointError,
    HandcraftedImageFeaturizer,
    ImageFeaturizer,
    ImageReadError,
    InMemoryEmbeddingCache,
    MiniLMEmbedder,
    OnnxImageFeaturizer,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    onnx_minilm,
)
from labelloop.embed.char_ngrams import (
    WithCharNgrams,
    char_ngrams_in,
    sentence_part,
    with_char_ngrams,
)

# ---------------------------------------------------------------------------------------------
# MiniLMEmbedder


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=4)


VARIED = [
    "ok",
    "The quarterly report shows revenue grew by twelve percent compared with last year.",
    "hi there",
    "Please call me back when you get this message, it is about the flat on Baker Street.",
    "",
    "Free entry in 2 a wkly comp to win FA Cup final tkts",
    "yes",
]


def test_vectors_are_unit_length_float32_with_the_model_dim(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed(VARIED)
    assert isinstance(minilm, Embedder)
    assert minilm.model_id == "minilm-l6-v2-int8"
    assert vectors.shape == (len(VARIED), 384) == (len(VARIED), minilm.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_zero_rows(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)


def test_length_sorting_keeps_the_callers_order(minilm: MiniLMEmbedder) -> None:
    alone = np.vstack([minilm.embed([text]) for text in VARIED])
    batched = minilm.embed(VARIED)
    unsorted = MiniLMEmbedder(batch_size=4, sort_by_length=False).embed(VARIED)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(batched, unsorted, atol=1e-5)
    # and the batches really were built shortest first
    lengths = [int(inputs["attention_mask"].sum(1).max()) for _, inputs in minilm.batches(VARIED)]
    assert lengths == sorted(lengths)


def test_batches_pad_to_their_longest_item_and_truncate_at_256(minilm: MiniLMEmbedder) -> None:
    texts = ["yes", "no", "a somewhat longer sentence with more tokens in it", "word " * 1000]
    # Padding three short texts to 256 tokens costs more than a second run: even with no
    # token budget the long text runs alone, and the 12-token one apart from "yes" and "no".
    unlimited = MiniLMEmbedder(max_batch_tokens=10**6)
    shapes = [inputs["input_ids"].shape for _, inputs in unlimited.batches(texts)]
    assert shapes == [(2, 3), (1, 12), (1, 256)]
    shapes = [inputs["input_ids"].shape for _, inputs in minilm.batches(texts)]
    assert shapes == [(2, 3), (1, 12), (1, 256)]
    (rows, inputs), *_ = MiniLMEmbedder(batch_size=2).batches(texts)
    assert sorted(rows.tolist()) == [0, 1]
    assert inputs["input_ids"].shape == (2, 3)  # [CLS] word [SEP], not the file's fixed 128


def test_least_padding_spans_cut_where_padding_costs_more_than_a_run() -> None:
    from labelloop.embed.onnx_minilm import least_padding_spans

    # equal lengths: one run is cheapest
    assert least_padding_spans([20] * 10, (0, 10), overhead=16) == [(0, 10)]
    # nine short and one long: 10 x 100 = 1016 in one run; 9 x 10 + 16 + 100 + 16 = 222 in two
    assert least_padding_spans([10] * 9 + [100], (0, 10), overhead=16) == [(0, 9), (9, 10)]
    # only the given span is cut, and its offsets are kept
    assert least_padding_spans([1, 10, 10, 100, 5], (1, 4), overhead=16) == [(1, 3), (3, 4)]
    assert least_padding_spans([7], (0, 1)) == [(0, 1)]
    # a huge overhead never cuts; a tiny one cuts wherever lengths differ
    lengths = [3, 5, 8, 8, 40]
    assert least_padding_spans(lengths, (0, 5), overhead=10**6) == [(0, 5)]
    assert least_padding_spans(lengths, (0, 5), overhead=1) == [(0, 1), (1, 2), (2, 4), (4, 5)]


def test_batch_spans_respect_rows_and_the_token_budget() -> None:
    from labelloop.embed.onnx_minilm import batch_spans

    assert batch_spans([5, 5, 5, 5, 5], batch_size=2, max_batch_tokens=100) == [
        (0, 2),
        (2, 4),
        (4, 5),
    ]
    # 3 x 30 = 90 fits, a 4th row padded to 40 would be 160 > 100; an item over budget goes alone
    assert batch_spans([10, 20, 30, 40, 300], batch_size=8, max_batch_tokens=100) == [
        (0, 3),
        (3, 4),
        (4, 5),
    ]
    assert batch_spans([], batch_size=8, max_batch_tokens=100) == []
    with pytest.raises(ValueError, match="max_batch_tokens"):
        MiniLMEmbedder(max_batch_tokens=0)


def test_embedding_is_deterministic(minilm: MiniLMEmbedder) -> None:
    assert np.array_equal(minilm.embed(VARIED), minilm.embed(VARIED))


def test_paraphrases_are_closer_than_unrelated_sentences(minilm: MiniLMEmbedder) -> None:
    a, b, c, d = minilm.embed(
        [
            "How do I reset my password?",
            "I forgot my password and need to change it.",
            "The weather in Lisbon is sunny today.",
            "It is warm and bright in Lisbon this afternoon.",
        ]
    )
    assert a @ b > a @ c + 0.3
    assert c @ d > b @ d + 0.3


def test_non_text_input_is_rejected_with_its_position(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        minilm.embed(["fine", 3])
    with pytest.raises(TypeError, match="not one string"):
        minilm.embed("just one string")


def test_progress_is_reported_on_long_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_minilm, "PROGRESS_MIN_ITEMS", 2)
    seen: list[tuple[int, int | None]] = []
    embedder = MiniLMEmbedder(batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert embedder.embed(["one", "two", "three"]).shape == (3, 384)
    assert seen[-1] == (3, 3) and [d for d, _ in seen] == sorted(d for d, _ in seen)


# ---------------------------------------------------------------------------------------------
# CachedEmbedder


class CountingEmbedder:
    """A fake embedder that records what it was asked to embed."""

    model_id = "fake-3d"
    dim = 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        raw = np.array([[len(t) + 1.0, t.count("a") + 1.0, 1.0] for t in texts], np.float32)
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_cache_embeds_each_distinct_text_once() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, InMemoryEmbeddingCache())
    first = cached.embed(["apple", "pear", "apple", "banana"])
    assert inner.calls == [["apple", "pear", "banana"]]
    np.testing.assert_array_equal(first, inner.embed(["apple", "pear", "apple", "banana"]))
    inner.calls.clear()

    second = cached.embed(["banana", "kiwi", "apple"])
    assert inner.calls == [["kiwi"]]  # only the unseen text is computed
    np.testing.assert_array_equal(second[[0, 2]], first[[3, 0]])
    np.testing.assert_array_equal(second[1], inner.embed(["kiwi"])[0])
    assert cached.computed == 4

    inner.calls.clear()
    cached.embed(["pear", "apple"])
    assert inner.calls == []
    assert cached.embed([]).shape == (0, 3)


def test_cache_keys_by_model_id() -> None:
    cache = InMemoryEmbeddingCache()
    CachedEmbedder(CountingEmbedder(), cache).embed(["apple"])
    other = CountingEmbedder()
    other.model_id = "another-model"
    CachedEmbedder(other, cache).embed(["apple"])
    assert other.calls == [["apple"]]


def test_cache_with_vectors_of_the_wrong_size_is_an_error() -> None:
    cache = InMemoryEmbeddingCache()
    cache.put_many("fake-3d", [content_hash("apple")], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"shape \(5,\), expected \(3,\)"):
        CachedEmbedder(CountingEmbedder(), cache).embed(["apple"])


# ---------------------------------------------------------------------------------------------
# Character n-grams appended (embedding.char_ngrams)


def test_char_ngrams_append_a_unit_lexical_part() -> None:
    texts = ["check out my channel http://bit.ly/x", "nice song", "see http://bit.ly/y"]
    emb = WithCharNgrams(CountingEmbedder(), 1024)
    v = emb.embed(texts)
    assert (emb.dim, emb.model_id) == (1027, "fake-3d+chars1024")
    assert v.shape == (3, 1027) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v[:, :3] * np.sqrt(2), CountingEmbedder().embed(texts), rtol=1e-5)
    np.testing.assert_array_equal(v, WithCharNgrams(CountingEmbedder(), 1024).embed(texts))
    # From vectors at hand and back (what char_ngrams: auto compares), and the id's parts.
    dense = CountingEmbedder().embed(texts)
    np.testing.assert_allclose(with_char_ngrams(dense, texts, 1024), v, rtol=1e-6)
    np.testing.assert_allclose(sentence_part(v, 1024), dense, rtol=1e-5)
    assert char_ngrams_in(emb.model_id) == ("fake-3d", 1024)
    assert char_ngrams_in("fake-3d") == ("fake-3d", 0)
    chars = v[:, 3:] * np.sqrt(2)
    assert chars[0] @ chars[2] > 0.4 > 0.1 > chars[0] @ chars[1]  # the shared URL counts
    assert emb.embed([]).shape == (0, 1027)


def test_char_ngrams_let_a_linear_student_see_a_surface_cue() -> None:
    from sklearn.linear_model import LogisticRegression

    class Blind:  # an embedding that cannot tell the texts apart
        model_id, dim = "blind", 2

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return np.tile(np.float32([0.6, 0.8]), (len(texts), 1))

    rng = np.random.default_rng(0)
    words = ["song", "great", "love", "video", "music", "voice", "best", "ever", "this", "wow"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(200)]
    spam = rng.random(200) < 0.5
    texts = [
        t + (" visit www.win-prize.com" if s else "") for t, s in zip(texts, spam, strict=True)
    ]
    for emb, floor, ceiling in ((Blind(), 0.0, 0.6), (WithCharNgrams(Blind(), 256), 0.95, 1.0)):
        x = emb.embed(texts)
        model = LogisticRegression(C=100, max_iter=1000).fit(x[:100], spam[:100])
        assert floor <= model.score(x[100:], spam[100:]) <= ceiling


def test_char_ngrams_setting_wraps_the_text_embedder() -> None:
    from pydantic import ValidationError

    from labelloop.core.config import EmbeddingSettings
    from labelloop.embed.factory import settings_embedder

    emb = settings_embedder(EmbeddingSettings(char_ngrams=128))
    assert isinstance(emb, WithCharNgrams) and emb.dim == 384 + 128
    assert emb.model_id == "minilm-l6-v2-int8+chars128"
    assert not isinstance(settings_embedder(EmbeddingSettings()), WithCharNgrams)
    with pytest.raises(ValidationError, match="char_ngrams"):
        EmbeddingSettings(char_ngrams=-1)
    with pytest.raises(ValidationError, match="char_ngrams"):
        EmbeddingSettings(char_ngrams=70_000)
    with pytest.raises(ValidationError, match="char_ngrams"):
        EmbeddingSettings(char_ngrams="some")
    # "auto" is a project's choice; unresolved (no project), it is what a project starts with.
    assert EmbeddingSettings().char_ngrams == "auto"
    assert settings_embedder(EmbeddingSettings()).model_id == "minilm-l6-v2-int8"
    with pytest.raises(ValueError, match="n_features=0"):
        WithCharNgrams(CountingEmbedder(), 0)


# ---------------------------------------------------------------------------------------------
# OpenAIEmbedder against a local fake endpoint


class FakeEndpoint:
    """An OpenAI-style /embeddings server on 127.0.0.1; ``mode`` picks how it answers."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.failures_left = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                endpoint.headers.append(dict(self.headers))
                status, answer = endpoint.answer(self.path, body)
                payload = (
                    answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def vector(text: str) -> list[float]:
        return [float(len(text)), 3.0, 4.0, 0.0]

    def answer(self, path: str, body: dict) -> tuple[int, object]:
        if path != "/v1/embeddings":
            return 404, {"error": "not found"}
        if self.failures_left > 0:
            self.failures_left -= 1
            return 503, {"error": "busy"}
        texts = body["input"]
        data = [{"index": i, "embedding": self.vector(t)} for i, t in enumerate(texts)]
        data.reverse()  # servers may answer out of order; "index" says where each goes
        match self.mode:
            case "ok":
                return 200, {"object": "list", "data": data, "model": body["model"]}
            case "too_few":
                return 200, {"data": data[1:]}
            case "no_data":
                return 200, {"error": {"message": "model not loaded"}}
            case "strings":
                data[0]["embedding"] = ["0.1", "x", "0.3", "0.4"]
                return 200, {"data": data}
            case "not_json":
                return 200, "<html>gateway</html>"
            case "bad_request":
                return 400, {"error": {"message": "input too long"}}
        raise AssertionError(self.mode)


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_openai_embedder_batches_orders_and_normalises(
    endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EMBED_KEY", "sk-test")
    embedder = OpenAIEmbedder(
        "fake-model", base_url=endpoint.url, api_key_env="FAKE_EMBED_KEY", batch_size=2
    )
    texts = ["a", "bbb", "cc", "dddd", "eeeee"]
    vectors = embedder.embed(texts)
    assert [r["input"] for r in endpoint.requests] == [["a", "bbb"], ["cc", "dddd"], ["eeeee"]]
    assert endpoint.headers[0]["Authorization"] == "Bearer sk-test"
    expected = np.array([FakeEndpoint.vector(t) for t in texts], np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert embedder.dim == 4 and embedder.model_id == "openai-compat:fake-model"
    assert len(endpoint.requests) == 3  # dim was learnt from the answers, no probe


def test_openai_embedder_retries_a_busy_server(endpoint: FakeEndpoint) -> None:
    endpoint.failures_left = 2
    embedder = OpenAIEmbedder("m", base_url=endpoint.url, api_key_env=None, retry_backoff=0)
    assert embedder.embed(["x"]).shape == (1, 4)
    assert len(endpoint.requests) == 3
    endpoint.failures_left = 5
    with pytest.raises(EndpointError, match="HTTP 503"):
        embedder.embed(["x"])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("too_few", "1 vectors for 2 inputs"),
        ("no_data", "no 'data' list"),
        ("strings", "non-numeric"),
        ("not_json", "not JSON"),
        ("bad_request", "HTTP 400"),
    ],
)
def test_openai_embedder_bad_answer_is_a_clear_error(
    endpoint: FakeEndpoint, mode: str, message: str
) -> None:
    endpoint.mode = mode
    embedder = OpenAIEmbedder("m", base_url=endpoint.url, api_key_env=None, retry_backoff=0)
    with pytest.raises(EndpointError, match=message) as caught:
        embedder.embed(["one", "two"])
    assert f"{endpoint.url}/embeddings (items 0..1)" in str(caught.value)
    if mode == "bad_request":
        assert len(endpoint.requests) == 1  # a client error is not retried


def test_openai_embedder_unreachable_server_is_a_clear_error() -> None:
    embedder = OpenAIEmbedder(
        "m", base_url="http://127.0.0.1:9/v1", api_key_env=None, max_retries=0, timeout=2
    )
    with pytest.raises(EndpointError, match="request failed"):
        embedder.embed(["x"])


# ---------------------------------------------------------------------------------------------
# SentenceTransformerEmbedder (optional dependency)


def test_sentence_transformers_missing_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'labelloop\[sentence-transformers\]'"):
        SentenceTransformerEmbedder("all-MiniLM-L6-v2")


# ---------------------------------------------------------------------------------------------
# Images


def gradient_image(size: int = 96) -> Image.Image:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    red = np.tile(ramp, (size, 1))
    pixels = np.stack([red, red.T * 0.5, np.full_like(red, 40)], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def checkerboard_image(size: int = 96) -> Image.Image:
    cells = (np.indices((size, size)) // 12).sum(axis=0) % 2
    pixels = np.stack([cells * 30, cells * 60, 80 + cells * 170], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def test_handcrafted_features_find_the_similar_image(tmp_path: Path) -> None:
    featurizer = HandcraftedImageFeaturizer()
    assert isinstance(featurizer, ImageFeaturizer)
    path = tmp_path / "gradient.png"
    gradient_image().save(path)
    variant = gradient_image(128).point(lambda v: min(255, v + 10))  # resized and brighter
    vectors = featurizer.featurize([path, variant, checkerboard_image()])
    assert vectors.shape == (3, featurizer.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    np.testing.assert_array_equal(vectors[0], featurizer.featurize([path.read_bytes()])[0])
    assert featurizer.featurize([]).shape == (0, featurizer.dim)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not an image")
    featurizer = HandcraftedImageFeaturizer()
    with pytest.raises(ImageReadError, match="broken.jpg: cannot read image"):
        featurizer.featurize([gradient_image(), bad])
    with pytest.raises(ImageReadError, match="missing.png: image file not found"):
        featurizer.featurize([tmp_path / "missing.png"])
    with pytest.raises(ImageReadError, match="image bytes at index 0"):
        featurizer.featurize([b"\x89PNG garbage"])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: an int as a varint, str/bytes (or a sub-message) length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor_value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_field(1, _field(1 if isinstance(d, int) else 2, d)) for d in dims)
    tensor_type = _field(1, 1) + _field(2, shape)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))


def global_average_pool_onnx() -> bytes:
    """An ONNX model, written as protobuf by hand (the onnx package is not a dependency):
    pixels [N, 3, H, W] -> GlobalAveragePool -> pooled [N, 3, 1, 1]."""
    node = _field(1, "pixels") + _field(2, "pooled") + _field(4, "GlobalAveragePool")
    graph = (
        _field(1, node)
        + _field(2, "tiny")
        + _field(11, _tensor_value_info("pixels", ["N", 3, "H", "W"]))
        + _field(12, _tensor_value_info("pooled", ["N", 3, 1, 1]))
    )
    opset = _field(1, "") + _field(2, 13)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # ir_version 8


def test_onnx_image_featurizer_feeds_normalised_nchw(tmp_path: Path) -> None:
    model = tmp_path / "pool.onnx"
    model.write_bytes(global_average_pool_onnx())
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    featurizer = OnnxImageFeaturizer(model, input_size=(8, 12), mean=mean, std=std, batch_size=2)
    colours = [(255, 0, 0), (10, 200, 30), (0, 0, 255)]
    vectors = featurizer.featurize([Image.new("RGB", (20, 30), c) for c in colours])
    expected = (np.array(colours) / 255.0 - mean) / std
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert featurizer.dim == 3
    assert isinstance(featurizer, ImageFeaturizer)


def test_onnx_image_featurizer_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nothing.onnx: ONNX image model not found"):
        OnnxImageFeaturizer(tmp_path / "nothing.onnx")


def test_write_behind_cache_reads_through_and_hands_its_writes_over_once() -> None:
    from labelloop.embed.cached import CachedEmbedder, InMemoryEmbeddingCache, WriteBehindCache

    class Counting:
        model_id, dim, calls = "m", 2, 0

        def embed(self, texts):
            Counting.calls += len(texts)
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    store = InMemoryEmbeddingCache()
    store.put_many("m", ["old"], np.array([[9.0, 9.0]], dtype=np.float32))
    behind = WriteBehindCache(store)
    cached = CachedEmbedder(Counting(), behind)
    cached.embed(["a", "bb"])
    assert Counting.calls == 2 and store.vectors.keys() == {("m", "old")}  # nothing written yet
    cached.embed(["a", "bb"])  # served from the pending writes
    assert Counting.calls == 2
    assert behind.get_many("m", ["old"])["old"].tolist() == [9.0, 9.0]  # reads through
    (taken,) = behind.take()
    model_id, hashes, vectors = taken
    assert model_id == "m" and len(hashes) == 2 and vectors.shape == (2, 2)
    assert behind.take() == []  # handed over once
    with pytest.raises(ValueError, match="2 hashes for 1 vectors"):
        behind.put_many("m", ["x", "y"], np.zeros((1, 2), dtype=np.float32))
