"""Tests for the cheap machine labelers (zero-shot, student), the ensemble, cascade and metrics."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from labelloop.core.config import LabelSpec
from labelloop.core.hashing import content_hash
from labelloop.core.probs import (
    accuracy_coverage_curve,
    build_suggestions,
    encode_labels,
    expected_calibration_error,
)
from labelloop.core.types import Item, Suggestion
from labelloop.labelers.base import Labeler
from labelloop.labelers.cascade import Cascade, CascadePolicy, select_for_expensive
from labelloop.labelers.ensemble import (
    EnsembleLabeler,
    combine_probs,
    cross_validated_lift,
    disagreement,
    fit_pool_weights,
    fit_sharpness,
    js_divergence,
    sharpen,
    vote_entropy,
)
from labelloop.labelers.student import StudentLabeler
from labelloop.labelers.zeroshot import ZeroShotLabeler

DIM = 64


class FakeEmbedder:
    """Deterministic bag-of-words embedder: each word is a fixed random unit vector."""

    model_id = "fake-bow-64"
    dim = DIM

    def __init__(self) -> None:
        self.calls = 0
        self.texts_embedded = 0

    @staticmethod
    def word_vector(word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(DIM)
        return v / np.linalg.norm(v)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            v = sum((self.word_vector(w) for w in t.lower().split()), np.zeros(DIM))
            out[i] = v / max(np.linalg.norm(v), 1e-12)
        return out


LABELS = [
    LabelSpec(name="sport", description="football match goal", examples=["the team won the game"]),
    LabelSpec(name="finance", description="money bank stock", examples=["shares fell at the bank"]),
    LabelSpec(name="weather", description="rain sun storm", examples=["heavy rain and wind today"]),
]
NAMES = [s.name for s in LABELS]


def items_of(texts: Sequence[str]) -> list[Item]:
    return [Item(content=t, content_hash=content_hash(t), id=i) for i, t in enumerate(texts)]


def blobs(
    n_per: int = 40, seed: int = 0, k: int = 3, dim: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim)) * 4
    y = np.repeat(np.arange(k), n_per)
    return centers[y] + rng.standard_normal((len(y), dim)), y


# --- probs / metrics --------------------------------------------------------------------------


def test_encode_labels_names_indices_and_errors() -> None:
    assert encode_labels(["finance", "sport", 2], NAMES, "single_label").tolist() == [1, 0, 2]
    Y = encode_labels([["sport", "weather"], []], NAMES, "multi_label")
    assert Y.tolist() == [[1, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match=r"y\[1\]: unknown label 'cooking'"):
        encode_labels(["sport", "cooking"], NAMES, "single_label")
    with pytest.raises(ValueError, match="unknown task"):
        encode_labels(["sport"], NAMES, "regression")


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, conf.size) < conf
    assert expected_calibration_error(conf, correct) < 0.01
    overconfident = np.full(10_000, 0.95)
    half_right = np.arange(10_000) % 2 == 0
    assert expected_calibration_error(overconfident, half_right) == pytest.approx(0.45)


def test_accuracy_coverage_curve() -> None:
    conf = np.array([0.9, 0.8, 0.6, 0.3])
    correct = np.array([1, 1, 0, 0])
    curve = accuracy_coverage_curve(conf, correct, thresholds=np.array([0.0, 0.7, 0.95]))
    assert curve["coverage"].tolist() == [1.0, 0.5, 0.0]
    assert curve["accuracy"][:2].tolist() == [0.5, 1.0]
    assert np.isnan(curve["accuracy"][2])
    with pytest.raises(ValueError, match="correct has 3"):
        expected_calibration_error(conf, correct[:3])


# --- zero-shot --------------------------------------------------------------------------------


def test_zeroshot_single_label_probabilities_and_suggestions() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS, "single_label")
    texts = ["what a goal in the football match", "the bank stock lost money", "storm and rain"]
    P = zs.predict_proba(emb.embed(texts))
    assert P.shape == (3, 3)
    assert np.allclose(P.sum(axis=1), 1.0) and (P >= 0).all() and (P <= 1).all()
    assert P.argmax(axis=1).tolist() == [0, 1, 2]
    sugg = zs.suggest(items_of(texts))
    assert [s.top_label for s in sugg] == NAMES
    assert all(isinstance(s, Suggestion) and s.labeler == "zeroshot" for s in sugg)
    assert "fake-bow-64" in sugg[0].labeler_version
    assert sugg[0].confidence == pytest.approx(max(sugg[0].probs.values()))
    assert sugg[0].confidence_method == "softmax"
    assert isinstance(zs, Labeler)


def test_zeroshot_prototypes_shift_predictions_toward_human_labels() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS, "single_label")
    query = emb.embed(["crypto wallet transfer"])  # words unrelated to any description
    before = zs.predict_proba(query)[0, 1]
    version_before = zs.version
    zs.add_texts(
        ["crypto wallet fees", "wallet transfer failed", "crypto transfer"], ["finance"] * 3
    )
    after = zs.predict_proba(query)[0]
    assert after[1] > before + 0.2
    assert after.argmax() == 1
    assert zs.example_counts.tolist() == [0, 3, 0]
    assert zs.version != version_before


def test_zeroshot_multi_label_and_bad_input() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS, "multi_label")
    P = zs.predict_proba(emb.embed(["football goal in heavy rain and storm", "nothing"]))
    assert ((P >= 0) & (P <= 1)).all()
    assert P[0, 0] > P[0, 1] and P[0, 2] > P[0, 1]
    zs.add_examples(emb.embed(["rain goal"]), [["sport", "weather"]])
    assert zs.example_counts.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"shape \(n, 64\)"):
        zs.predict_proba(np.zeros((2, 5)))


def test_zeroshot_fit_temperature_improves_log_loss() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS, temperature=1.0)
    texts = ["football goal", "bank money", "rain storm", "match goal", "stock bank", "sun rain"]
    y = ["sport", "finance", "weather"] * 2
    X = emb.embed(texts)
    loss_before = -np.log(zs.predict_proba(X)[np.arange(6), [0, 1, 2] * 2]).mean()
    t = zs.fit_temperature(X, y)
    loss_after = -np.log(zs.predict_proba(X)[np.arange(6), [0, 1, 2] * 2]).mean()
    assert t < 1.0 and loss_after < loss_before


# --- student ----------------------------------------------------------------------------------


def test_student_probabilities_follow_taxonomy_order() -> None:
    X, y = blobs()
    names_shuffled = ["weather", "sport", "finance"]  # taxonomy order differs from sorted order
    y_names = [names_shuffled[i] for i in y]
    st = StudentLabeler(names_shuffled).fit(X, y_names)
    P = st.predict_proba(X)
    assert np.allclose(P.sum(axis=1), 1.0) and (P >= 0).all()
    assert (P.argmax(axis=1) == y).mean() > 0.95


def test_student_unseen_labels_get_zero_and_cold_start_is_uniform() -> None:
    X, y = blobs()
    st = StudentLabeler(NAMES)
    assert np.allclose(st.predict_proba(X[:2]), 1 / 3)
    keep = y != 1  # no human has used "finance" yet
    st.fit(X[keep], [NAMES[i] for i in y[keep]])
    P = st.predict_proba(X)
    assert np.allclose(P[:, 1], 0.0) and np.allclose(P.sum(axis=1), 1.0)
    only_sport = StudentLabeler(NAMES).fit(X[:5], ["sport"] * 5)
    prior = only_sport.predict_proba(X[:1])[0]
    assert prior.argmax() == 0 and np.isclose(prior.sum(), 1.0) and (prior > 0).all()


def test_student_version_increments_and_partial_fit_refit_matches_fit() -> None:
    X, y = blobs()
    y_names = [NAMES[i] for i in y]
    st = StudentLabeler(NAMES)
    st.partial_fit(X[::2], y_names[::2])
    v1 = st.version
    st.partial_fit(X[1::2], y_names[1::2])
    assert st.n_fits == 2 and st.version != v1 and st.n_labels == len(y)
    order = np.r_[np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    ref = StudentLabeler(NAMES).fit(X[order], [y_names[i] for i in order])
    assert np.allclose(st.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_student_sgd_and_multi_label() -> None:
    X, y = blobs()
    sgd = StudentLabeler(NAMES, incremental="sgd")
    sgd.partial_fit(X[::2], y[::2]).partial_fit(X[1::2], y[1::2])
    P = sgd.predict_proba(X)
    assert np.allclose(P.sum(axis=1), 1.0) and (P.argmax(axis=1) == y).mean() > 0.9
    Y = np.eye(3, dtype=int)[y]
    Y[:, 2] = 0  # "weather" never used
    multi = StudentLabeler(NAMES, "multi_label").fit(X, Y)
    Pm = multi.predict_proba(X)
    assert Pm.shape == (len(y), 3) and ((Pm >= 0) & (Pm <= 1)).all()
    assert np.allclose(Pm[:, 2], 0.0)
    assert (Pm[y == 0, 0] > 0.5).mean() > 0.9
    multi_sgd = StudentLabeler(NAMES, "multi_label", incremental="sgd").partial_fit(X, Y)
    assert multi_sgd.predict_proba(X).shape == (len(y), 3)


def test_student_out_of_fold_is_held_out_and_suggest_needs_embedder() -> None:
    X, y = blobs(n_per=10)
    st = StudentLabeler(NAMES)
    oof = st.out_of_fold_proba(X, y, n_splits=5)
    assert oof.shape == (30, 3) and np.allclose(oof.sum(axis=1), 1.0)
    assert st.n_fits == 0
    with pytest.raises(ValueError, match="needs an embedder"):
        st.suggest(items_of(["x"]))
    with pytest.raises(ValueError, match="X has 30 rows but y has 29"):
        st.fit(X, y[:29])


# --- ensemble ---------------------------------------------------------------------------------


def test_disagreement_is_zero_when_all_agree_and_one_when_opposite() -> None:
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert np.allclose(disagreement(np.stack([P, P, P])), 0.0)
    assert np.allclose(vote_entropy(np.stack([P, P])), 0.0)
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert js_divergence(a, b)[0] == pytest.approx(1.0)
    assert disagreement(np.stack([a, b]))[0] == pytest.approx(1.0)
    assert vote_entropy(np.stack([a, b]))[0] == pytest.approx(1.0)
    Pm = np.array([[0.9, 0.1]])
    assert disagreement(np.stack([Pm, Pm]), "multi_label")[0] == pytest.approx(0.0)
    assert disagreement(np.stack([Pm, 1 - Pm]), "multi_label")[0] > 0.3
    assert np.allclose(disagreement(np.stack([P])), 0.0)


def test_stacking_weights_favour_the_better_labeler() -> None:
    rng = np.random.default_rng(1)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    good = np.full((n, k), 0.05)
    good[np.arange(n), y] = 0.85
    good[rng.uniform(size=n) < 0.1] = 0.25  # sometimes unsure
    noise = rng.dirichlet(np.ones(k), n)
    w = fit_pool_weights(np.stack([noise, good]), y)
    assert w[1] > 0.8 and np.isclose(w.sum(), 1.0)
    P = combine_probs(np.stack([noise, good]), w)
    assert np.allclose(P.sum(axis=1), 1.0)


def test_cross_validated_lift_tells_a_helpful_member_from_noise() -> None:
    rng = np.random.default_rng(5)
    n, k = 200, 3
    y = rng.integers(0, k, n)
    base = np.full((n, k), 0.2)
    base[np.arange(n), np.where(rng.uniform(size=n) < 0.7, y, (y + 1) % k)] = 0.6
    good = np.full((n, k), 0.05)
    good[np.arange(n), np.where(rng.uniform(size=n) < 0.95, y, (y + 2) % k)] = 0.9
    w, alone, pooled = cross_validated_lift(np.stack([base, good]), y)
    assert pooled < alone and w[1] > 0.5
    # A member that answers one label whatever the item: no held-out lift.
    stuck = np.tile(np.eye(k)[0] * 0.9 + 0.05, (n, 1))
    _, alone, pooled = cross_validated_lift(np.stack([base, stuck]), y)
    assert pooled >= alone - 1e-3


def test_sharpening_fixes_an_underconfident_pool() -> None:
    rng = np.random.default_rng(2)
    n, k = 2000, 3
    y = rng.integers(0, k, n)
    right = rng.uniform(size=n) < 0.9  # 90% right, but says only 0.5 for its answer
    answer = np.where(right, y, (y + 1) % k)
    P = np.full((n, k), 0.25)
    P[np.arange(n), answer] = 0.5
    a = fit_sharpness(P, y)
    assert a > 1.5
    Q = sharpen(P, a)
    assert np.allclose(Q.sum(axis=1), 1.0) and (Q.argmax(axis=1) == answer).all()
    assert expected_calibration_error(Q.max(axis=1), right) < 0.02
    assert np.allclose(sharpen(P, 1.0), P)
    assert np.allclose(sharpen(np.array([[0.7, 0.5]]), 1.0, "multi_label"), [[0.7, 0.5]])


def test_ensemble_equal_weights_below_min_labels_and_learned_above() -> None:
    emb = FakeEmbedder()
    X, y = blobs(dim=DIM)
    good = StudentLabeler(NAMES, embedder=emb).fit(X, y)
    bad = ZeroShotLabeler(emb, LABELS)  # knows nothing about the blobs
    ens = EnsembleLabeler([bad, good], NAMES, min_labels=30)
    stack = ens.member_proba(X)
    ens.fit(stack[:, :10], y[:10])
    assert np.allclose(ens.weights, 0.5)
    ens.fit(stack, y)
    assert ens.weights[1] > 0.7 and ens.n_fits == 2
    P = ens.predict_proba(X)
    assert np.allclose(P.sum(axis=1), 1.0) and (P.argmax(axis=1) == y).mean() > 0.95


def test_ensemble_suggest_embeds_once_for_members_sharing_an_embedder() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS)
    st = StudentLabeler(NAMES, embedder=emb).fit(emb.embed(["goal", "bank", "rain"]), NAMES)
    emb.calls = 0
    ens = EnsembleLabeler([zs, st], NAMES)
    sugg, dis = ens.suggest_with_disagreement(items_of(["football goal", "bank money"]))
    assert emb.calls == 1
    assert [s.labeler for s in sugg] == ["ensemble", "ensemble"]
    assert "zeroshot=0.50" in sugg[0].labeler_version and dis.shape == (2,)
    assert np.isclose(sum(sugg[0].probs.values()), 1.0)


# --- cascade ----------------------------------------------------------------------------------


class FixedLabeler:
    """Returns preset probabilities per item id."""

    def __init__(self, labeler_id: str, probs: dict[int, list[float]]) -> None:
        self.labeler_id = labeler_id
        self.version = "1"
        self.probs = probs

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        P = np.array([self.probs[it.id] for it in items])
        return build_suggestions(items, P, NAMES, "single_label", self.labeler_id, "1", 0.0, "x")


class CountingExpensive:
    labeler_id = "llm"
    version = "fake"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        self.seen.extend(it.id for it in items)
        P = np.tile([0.0, 0.0, 1.0], (len(items), 1))
        return build_suggestions(items, P, NAMES, "single_label", "llm", "fake", 200.0, "logprob")


class CappedNarrowing:
    """An expensive labeler with a call budget that accepts candidate labels per item."""

    labeler_id = "llm"
    version = "capped"
    candidate_labels = 2

    def __init__(self, calls: int) -> None:
        self.remaining_calls = calls
        self.asked: list[int] = []
        self.shown: list[list[str]] = []

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        raise AssertionError("the whole taxonomy was shown despite candidate_labels")

    def suggest_among(self, items: Sequence[Item], candidates) -> list[Suggestion]:  # noqa: ANN001
        self.asked += [it.id for it in items]
        self.shown += [list(c) for c in candidates]
        return [
            Suggestion(it.id, it.content_hash, "llm", "capped", {c[0]: 1.0})
            for it, c in zip(items, candidates, strict=True)
        ]


def test_cascade_spends_a_budget_on_the_least_certain_and_shows_their_likeliest_labels() -> None:
    items = items_of(["sure", "unsure", "less unsure", "least sure"])
    probs = np.array(
        [[0.90, 0.05, 0.05], [0.40, 0.35, 0.25], [0.50, 0.30, 0.20], [0.34, 0.30, 0.36]]
    )
    llm = CappedNarrowing(calls=2)
    policy = CascadePolicy(min_human_labels=0, confidence_threshold=0.6, disagreement_threshold=1.0)
    picked, answers = Cascade(llm, NAMES, policy=policy).ask(items, probs, np.zeros(4), 100)
    # Three items are unsure (confidence < 0.6); the budget of 2 goes to the least certain two.
    assert picked.tolist() == [1, 3] and llm.asked == [1, 3]
    assert llm.shown == [[NAMES[0], NAMES[1]], [NAMES[2], NAMES[0]]]
    assert [a.item_id for a in answers] == [1, 3]
    llm.remaining_calls = 0
    assert Cascade(llm, NAMES, policy=policy).ask(items, probs, np.zeros(4), 100)[0].size == 0


def test_cascade_asks_calibration_sample_members_within_its_measure_share() -> None:
    items = items_of(["a", "b", "c", "d", "e", "f"])
    conf = np.array([0.34, 0.37, 0.40, 0.45, 0.50, 0.95])
    probs = np.column_stack([conf, (1 - conf) / 2, (1 - conf) / 2])
    prefer = np.array([False, False, True, True, True, True])  # sample members: c, d, e, f
    policy = CascadePolicy(min_human_labels=0, confidence_threshold=0.6, disagreement_threshold=1.0)

    def asked(calls: int | None, prefer: np.ndarray, policy: CascadePolicy = policy) -> list:
        llm = CappedNarrowing(calls=0 if calls is None else calls)
        if calls is None:
            del llm.remaining_calls  # uncapped
        return (
            Cascade(llm, NAMES, policy=policy)
            .ask(items, probs, np.zeros(6), 100, prefer)[0]
            .tolist()
        )

    # Half of 4 calls to the least certain members (c, d), the rest to the least certain of
    # the others (a, b); with 3 calls, ceil(1.5) = 2 members, then a.
    assert asked(4, prefer) == [0, 1, 2, 3]
    assert asked(3, prefer) == [0, 2, 3]
    # A member the policy would skip (f is sure) is asked all the same: the lift is measured
    # on a random sample, not on the hard items only.
    only_f = np.array([False] * 5 + [True])
    assert asked(2, only_f) == [0, 5]
    assert asked(None, only_f) == [0, 1, 2, 3, 4, 5]  # uncapped: every member, every unsure
    off = CascadePolicy(0, 0.6, 1.0, measure_share=0.0)
    assert asked(3, prefer, off) == [0, 1, 2]  # as without prefer
    assert asked(None, only_f, off) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="measure_share"):
        CascadePolicy(measure_share=1.5)


def test_select_for_expensive_reasons() -> None:
    policy = CascadePolicy(
        min_human_labels=10, confidence_threshold=0.8, disagreement_threshold=0.3
    )
    conf = np.array([0.9, 0.5, 0.95, 0.7])
    dis = np.array([0.0, 0.0, 0.6, 0.5])
    mask, reasons = select_for_expensive(conf, dis, 100, policy)
    assert mask.tolist() == [False, True, True, True]
    assert reasons["low_confidence"].tolist() == [False, True, False, True]
    assert reasons["disagreement"].tolist() == [False, False, True, True]
    cold, _ = select_for_expensive(conf, dis, 3, policy)
    assert cold.all()
    with pytest.raises(ValueError, match="confidence_threshold"):
        CascadePolicy(confidence_threshold=1.5)


def test_cascade_calls_expensive_only_for_chosen_items() -> None:
    sure, unsure = [0.9, 0.05, 0.05], [0.5, 0.4, 0.1]
    a = FixedLabeler("a", {0: sure, 1: unsure, 2: sure, 3: sure})
    b = FixedLabeler("b", {0: sure, 1: unsure, 2: [0.05, 0.9, 0.05], 3: sure})
    ens = EnsembleLabeler([a, b], NAMES)
    expensive = CountingExpensive()
    policy = CascadePolicy(
        min_human_labels=20, confidence_threshold=0.6, disagreement_threshold=0.3
    )
    cascade = Cascade(expensive, NAMES, policy=policy, cheap=ens)
    items = items_of(["w", "x", "y", "z"])
    sugg, stats = cascade.run(items, n_human_labels=50)
    assert expensive.seen == [1, 2]  # item 1 unsure, item 2 members disagree
    assert [s.labeler for s in sugg] == ["ensemble", "llm", "llm", "ensemble"]
    assert stats["n_expensive"] == 2 and stats["calls_saved"] == 2
    assert stats["expensive_share"] == 0.5
    assert stats["reasons"]["disagreement"] == 1
    expensive.seen.clear()
    _, cold_stats = cascade.run(items, n_human_labels=5)
    assert expensive.seen == [0, 1, 2, 3] and cold_stats["cold_start"]
    cascade.n_human_labels = 100
    assert len(cascade.suggest(items)) == 4 and cascade.last_stats["n_expensive"] == 2
    assert isinstance(cascade, Labeler)


# --- the real embedder (integration) ----------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    mod = pytest.importorskip(
        "labelloop.embed.onnx_minilm", reason="labelloop.embed.onnx_minilm not written yet"
    )
    try:
        return mod.MiniLMEmbedder()
    except Exception as exc:  # the model package may be missing on a bare machine
        pytest.skip(f"MiniLM embedder unavailable: {exc}")


def test_zeroshot_with_minilm_on_spam(minilm) -> None:
    labels = [
        LabelSpec(
            name="spam",
            description="unsolicited advertising, prize or lottery messages",
            examples=[
                "WINNER! You have won a free prize, call now to claim",
                "Cheap loans, text YES",
            ],
        ),
        LabelSpec(
            name="ham",
            description="an ordinary personal message between friends or family",
            examples=["See you at dinner tonight?", "I'll be late, traffic is bad"],
        ),
    ]
    zs = ZeroShotLabeler(minilm, labels)
    sugg = zs.suggest(
        items_of(
            ["Congratulations, you won a 1000 pound voucher! Text CLAIM to 80062", "ok see u at 7"]
        )
    )
    assert [s.top_label for s in sugg] == ["spam", "ham"]
    assert minilm.model_id in sugg[0].labeler_version


def test_zeroshot_out_of_fold_leaves_labeler_untouched() -> None:
    emb = FakeEmbedder()
    zs = ZeroShotLabeler(emb, LABELS)
    X = emb.embed(["crypto wallet", "crypto fees", "wallet fees", "rain storm"])
    y = ["finance", "finance", "finance", "weather"]
    oof = zs.out_of_fold_proba(X, y, n_splits=4)
    assert oof.shape == (4, 3) and np.allclose(oof.sum(axis=1), 1.0)
    assert zs.example_counts.sum() == 0
    assert oof[0, 1] > zs.predict_proba(X[:1])[0, 1]  # the other crypto items pulled it to finance


def test_multi_label_pool_and_empty_inputs() -> None:
    rng = np.random.default_rng(3)
    Y = (rng.uniform(size=(200, 3)) < 0.4).astype(int)
    good = np.where(Y == 1, 0.9, 0.1)
    noise = rng.uniform(size=Y.shape)
    ens = EnsembleLabeler([FixedLabeler("a", {}), FixedLabeler("b", {})], NAMES, "multi_label")
    ens.fit(np.stack([noise, good]), Y)
    assert ens.weights[1] > 0.8
    P = ens.combine(np.stack([noise, good]))
    assert ((P >= 0) & (P <= 1)).all() and ((P > 0.5) == Y).mean() > 0.95
    zs = ZeroShotLabeler(FakeEmbedder(), LABELS)
    assert zs.suggest([]) == [] and zs.predict_proba(np.zeros((0, DIM))).shape == (0, 3)
    cascade = Cascade(CountingExpensive(), NAMES, "multi_label", cheap=ens)
    sugg, stats = cascade.run([], n_human_labels=100)
    assert sugg == [] and stats["n_expensive"] == 0 and stats["expensive_share"] == 0.0


def test_out_of_fold_uses_the_chosen_algorithm() -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    y = ["a" if x > 0 else "b" for x in X[:, 0]]
    made: list[str] = []

    def factory():
        made.append("forest")
        return RandomForestClassifier(n_estimators=10, random_state=0)

    st = StudentLabeler(["a", "b"], algorithm="random_forest", estimator_factory=factory)
    st.out_of_fold_proba(X, y, n_splits=3)
    assert made == ["forest"] * 3  # each fold fits the chosen kind, not logistic regression
