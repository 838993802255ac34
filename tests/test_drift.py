"""Drift detection (issue 15, items 1-2): per-column tests against a stored reference profile,
embedding drift on the YouTube replay, change detectors and quality over windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from labelloop.monitor.detectors import (
    ADWIN,
    DDM,
    detect_changes,
    estimate_accuracy,
    windowed_quality,
)
from labelloop.monitor.drift import (
    ReferenceProfile,
    check_drift,
    embedding_drift,
    infer_kind,
    prediction_drift,
    profile_reference,
    window_counts,
)

YOUTUBE = Path("/work/shared/data/youtube_spam/youtube_spam.csv")
WINDOW = 500


def tabular(n: int, rng: np.random.Generator, shifted: bool = False) -> pd.DataFrame:
    """Two numbers and a category; ``shifted`` moves the mean of ``amount`` by 0.5 sd,
    stretches ``wait`` by 40 % and moves 15 points of share between channels."""
    p = [0.35, 0.35, 0.2, 0.1] if shifted else [0.5, 0.3, 0.15, 0.05]
    return pd.DataFrame(
        {
            "amount": rng.normal(0.5 if shifted else 0.0, 1.0, n),
            "wait": rng.gamma(2.0, 1.4 if shifted else 1.0, n),
            "channel": rng.choice(["web", "app", "phone", "shop"], n, p=p),
        }
    )


def stream(shift_at: int | None, seed: int, windows: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = windows * WINDOW
    if shift_at is None:
        return tabular(n, rng)
    return pd.concat(
        [tabular(shift_at, rng), tabular(n - shift_at, rng, shifted=True)], ignore_index=True
    )


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    reference = tabular(20_000, np.random.default_rng(0))
    return profile_reference(reference, chunk_size=WINDOW)


def verdicts(profile: ReferenceProfile, frame: pd.DataFrame) -> list[bool]:
    return [
        check_drift(profile, frame.iloc[i : i + WINDOW]).dataset_drift
        for i in range(0, len(frame), WINDOW)
    ]


# -- tabular -----------------------------------------------------------------------------------


def test_kinds_are_inferred_from_dtype_and_cardinality() -> None:
    assert infer_kind(pd.Series([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])) == "num"
    assert infer_kind(pd.Series([1, 2, 1, 2, 1, 2])) == "cat"
    assert infer_kind(pd.Series(["a", "b"])) == "cat"
    assert infer_kind(pd.Series([True, False])) == "cat"


def test_a_known_shift_is_detected_within_one_window(profile: ReferenceProfile) -> None:
    shift_at = 10 * WINDOW + WINDOW // 2  # halfway through window 10
    alarms = verdicts(profile, stream(shift_at, seed=1))
    first = alarms.index(True)
    assert not any(alarms[:10]), alarms
    assert first in (10, 11), alarms
    assert all(alarms[11:]), alarms


def test_no_shift_raises_no_alert_over_20_windows(profile: ReferenceProfile) -> None:
    frame = stream(None, seed=2)
    reports = [
        check_drift(profile, frame.iloc[i : i + WINDOW]) for i in range(0, len(frame), WINDOW)
    ]
    assert len(reports) == 20
    assert not any(r.dataset_drift for r in reports)
    column_alarms = sum(len(r.drifted_columns) for r in reports)
    assert column_alarms <= 2, column_alarms  # 60 column tests at alpha = 0.01


def test_small_windows_use_ks_and_chi2_large_ones_wasserstein_and_js(
    profile: ReferenceProfile,
) -> None:
    rng = np.random.default_rng(3)
    small = check_drift(profile, tabular(800, rng))
    large = check_drift(profile, tabular(5000, rng, shifted=True))
    assert [c.test for c in small.columns] == ["ks", "ks", "chi2"]
    assert [c.test for c in large.columns] == ["wasserstein", "wasserstein", "jensenshannon"]
    assert all(c.p_value is not None for c in small.columns)
    assert large.dataset_drift and large.drifted_share == 1.0
    forced = check_drift(profile, tabular(800, rng), tests={"amount": "psi", "channel": "psi"})
    assert [c.test for c in forced.columns] == ["psi", "ks", "psi"]
    with pytest.raises(ValueError):
        check_drift(profile, tabular(800, rng), tests={"channel": "ks"})


def test_large_samples_do_not_fire_on_negligible_shifts() -> None:
    """The reason for effect-size thresholds: at 200k rows a 0.03 sd shift has a tiny KS
    p-value, but its normalised Wasserstein distance stays far below the threshold."""
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    cur = pd.DataFrame({"x": rng.normal(0.03, 1, 200_000)})
    assert stats.ks_2samp(ref.x, cur.x).pvalue < 1e-3
    report = check_drift(profile_reference(ref), cur)
    assert report.columns[0].test == "wasserstein"
    assert not report.dataset_drift


def test_binned_wasserstein_is_close_to_the_exact_one(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(5)
    ref = tabular(20_000, np.random.default_rng(0))
    cur = tabular(5000, rng, shifted=True)
    got = {c.column: c.statistic for c in check_drift(profile, cur).columns}
    for name in ("amount", "wait"):
        exact = stats.wasserstein_distance(ref[name], cur[name]) / ref[name].std(ddof=0)
        assert got[name] == pytest.approx(exact, rel=0.03)


def test_profile_json_round_trip_gives_the_same_verdicts(profile: ReferenceProfile) -> None:
    again = ReferenceProfile.from_json(profile.to_json())
    frame = stream(10 * WINDOW, seed=6)
    for i in range(0, len(frame), WINDOW):
        window = frame.iloc[i : i + WINDOW]
        assert check_drift(again, window) == check_drift(profile, window)


def test_window_counts_add_up_like_the_rows_they_hold(profile: ReferenceProfile) -> None:
    frame = stream(None, seed=7, windows=4)
    parts = [window_counts(profile, frame.iloc[i : i + WINDOW]) for i in range(0, 2000, WINDOW)]
    folded = parts[0] + parts[1] + parts[2] + parts[3]
    whole = window_counts(profile, frame)
    assert folded.n_rows == whole.n_rows == 2000
    for name in profile.columns:
        np.testing.assert_allclose(folded.counts[name], whole.counts[name])
    a, b = check_drift(profile, folded), check_drift(profile, frame)
    assert [c.drifted for c in a.columns] == [c.drifted for c in b.columns]
    np.testing.assert_allclose(
        [c.statistic for c in a.columns], [c.statistic for c in b.columns], rtol=1e-9
    )


def test_missing_values_are_reported_and_left_out_of_the_tests(profile: ReferenceProfile) -> None:
    frame = tabular(1000, np.random.default_rng(8))
    frame.loc[:249, "amount"] = np.nan
    frame.loc[:99, "channel"] = None
    frame.loc[:9, "wait"] = np.inf
    cols = {c.column: c for c in check_drift(profile, frame).columns}
    assert cols["wait"].share_missing == pytest.approx(0.01)
    assert cols["amount"].share_missing == pytest.approx(0.25)
    assert cols["amount"].n == 750
    assert cols["channel"].share_missing == pytest.approx(0.1)
    assert not cols["amount"].drifted


def test_unseen_categories_count_as_drift(profile: ReferenceProfile) -> None:
    frame = tabular(2000, np.random.default_rng(9))
    frame.loc[:599, "channel"] = "kiosk"
    cols = {c.column: c for c in check_drift(profile, frame).columns}
    assert cols["channel"].drifted
    assert not cols["amount"].drifted


def test_prediction_drift_uses_the_category_test() -> None:
    rng = np.random.default_rng(10)
    ref = rng.choice(["ham", "spam"], 5000, p=[0.6, 0.4])
    same = prediction_drift(ref, rng.choice(["ham", "spam"], 800, p=[0.6, 0.4]))
    moved = prediction_drift(ref, rng.choice(["ham", "spam"], 800, p=[0.4, 0.6]))
    assert same.test == moved.test == "chi2"
    assert not same.drifted
    assert moved.drifted


# -- embeddings --------------------------------------------------------------------------------


def test_embedding_drift_on_random_vectors() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=(400, 64)), rng.normal(size=(400, 64))
    assert not embedding_drift(ref, cur).drifted
    moved = embedding_drift(ref, cur + 0.3)
    assert moved.drifted and moved.auc > 0.8 and moved.mmd_p_value < 0.05


@pytest.fixture(scope="module")
def youtube() -> tuple[pd.DataFrame, np.ndarray]:
    if not YOUTUBE.exists():
        pytest.skip(f"{YOUTUBE} is not on this machine")
    from labelloop.embed.onnx_minilm import MiniLMEmbedder

    frame = pd.read_csv(YOUTUBE)
    return frame, MiniLMEmbedder(batch_size=32).embed(frame["text"].tolist())


def test_embedding_drift_fires_when_the_stream_moves_to_a_new_video(
    youtube: tuple[pd.DataFrame, np.ndarray],
) -> None:
    frame, vectors = youtube
    videos = list(dict.fromkeys(frame["video"]))
    assert len(videos) == 5
    for before, after in zip(videos, videos[1:], strict=False):
        ref = vectors[(frame["video"] == before).to_numpy()]
        cur = vectors[(frame["video"] == after).to_numpy()]
        result = embedding_drift(ref, cur)
        assert result.drifted, (before, after, result)


def test_embedding_drift_stays_quiet_within_one_video(
    youtube: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """Random halves of one video's comments. (The file's order is not a clean replay within
    a video: its halves differ in spam share, e.g. LMFAO 16 % vs 92 %, and do drift.)"""
    frame, vectors = youtube
    for video in dict.fromkeys(frame["video"]):
        own = vectors[(frame["video"] == video).to_numpy()]
        order = np.random.default_rng(12).permutation(len(own))
        half = len(own) // 2
        result = embedding_drift(own[order[:half]], own[order[half:]])
        assert not result.drifted, (video, result)


# -- change detectors and quality over time ----------------------------------------------------


def errors_with_a_drop(seed: int, at: int = 3000, n: int = 4500) -> np.ndarray:
    """1 = a wrong prediction: 10 % wrong until ``at``, 35 % after (accuracy 0.90 -> 0.65)."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(at) < 0.10, rng.random(n - at) < 0.35].astype(float)


def test_adwin_fires_after_a_drop_in_accuracy_and_not_before() -> None:
    for seed in range(5):
        hits = detect_changes(errors_with_a_drop(seed), ADWIN())
        assert hits, seed
        assert 3000 <= hits[0] <= 3300, (seed, hits)
    quiet = (np.random.default_rng(13).random(10_000) < 0.1).astype(float)
    assert detect_changes(quiet, ADWIN()) == []


def test_ddm_fires_after_a_drop_in_accuracy() -> None:
    """DDM is noisier than ADWIN (river's DDM gives the same detections): it may fire early on
    a lucky run of correct answers, but it always fires soon after the real drop."""
    early = 0
    for seed in range(10):
        hits = detect_changes(errors_with_a_drop(seed), DDM(warm_start=300))
        assert any(3000 <= h <= 3600 for h in hits), (seed, hits)
        early += any(h < 3000 for h in hits)
    assert early <= 3


def test_ddm_warns_before_it_fires() -> None:
    ddm = DDM()
    states = [(ddm.update(x).warning_detected, ddm.drift_detected) for x in errors_with_a_drop(2)]
    first_drift = next(i for i, (_, d) in enumerate(states) if d and i >= 3000)
    assert any(w for w, _ in states[3000:first_drift])


def test_detectors_match_river_when_it_is_installed() -> None:
    """Same detections as river's DDM; the same first detection as river's ADWIN (after it,
    ours may fire again while the window is still shrinking past the old buckets)."""
    drift = pytest.importorskip("river.drift")
    for seed in range(3):
        errors = errors_with_a_drop(seed)
        assert detect_changes(errors, DDM()) == detect_changes(errors, drift.binary.DDM())
        ours, theirs = detect_changes(errors, ADWIN()), detect_changes(errors, drift.ADWIN())
        assert theirs and ours[:1] == theirs[:1]


def test_windowed_quality_has_wilson_intervals_and_f1() -> None:
    rng = np.random.default_rng(14)
    correct = rng.random(2100) < 0.8
    table = windowed_quality(correct, 500)
    assert table["n"].tolist() == [500, 500, 500, 500, 100]
    assert (table["low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["high"]).all()
    assert (table["low"] < 0.8).sum() >= 4 and (table["high"] > 0.8).sum() >= 4
    assert (table["high"] - table["low"]).iloc[-1] > (table["high"] - table["low"]).iloc[0]
    y_true = rng.integers(0, 3, 900)
    y_pred = np.where(rng.random(900) < 0.7, y_true, (y_true + 1) % 3)
    with_f1 = windowed_quality(None, 300, y_true=y_true, y_pred=y_pred, n_boot=50)
    assert with_f1["accuracy"].between(0.6, 0.8).all()
    assert ((with_f1["f1_low"] <= with_f1["f1"]) & (with_f1["f1"] <= with_f1["f1_high"])).all()
    with pytest.raises(ValueError):
        windowed_quality(correct, 0)


def test_confidence_based_estimate_tracks_realised_accuracy() -> None:
    rng = np.random.default_rng(15)
    confidence = rng.uniform(0.5, 1.0, 5000)
    correct = (rng.random(5000) < confidence).astype(float)  # calibrated by construction
    correct[1000:] = np.nan  # only the first 1000 audited
    estimate = estimate_accuracy(confidence, correct=correct)
    assert estimate.n == 5000 and estimate.n_labelled == 1000
    assert abs(estimate.error) < 0.03
    assert estimate.within_interval
    overconfident = estimate_accuracy(np.clip(confidence + 0.15, 0, 1), correct=correct)
    assert not overconfident.within_interval
    proba = np.column_stack([1 - confidence, confidence])
    assert estimate_accuracy(proba).estimate == pytest.approx(confidence.mean())
