"""Calibration maps, thresholds and hierarchy-consistent decisions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rerank_helpers import toy_tags

from tagindex.calibrate import (
    Calibration,
    CalibrationParams,
    Isotonic,
    Platt,
    expected_calibration_error,
    precision_at_coverage,
    precision_coverage,
)
from tagindex.text import ancestors


def _noisy(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * scores))).astype(float)
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_is_monotone_and_bounded(seed: int) -> None:
    scores, labels = _noisy(seed)
    cal = Isotonic.fit(scores, labels)
    grid = np.linspace(-5, 5, 501)
    probs = cal.predict(grid)
    assert np.all(np.diff(probs) >= -1e-12)
    assert probs.min() >= 0 and probs.max() <= 1
    # isotonic regression preserves the mean of the labels on the data it was fitted on
    assert abs(cal.predict(scores).mean() - labels.mean()) < 1e-9


def test_isotonic_pools_violators() -> None:
    cal = Isotonic.fit(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 0.0, 1.0]))
    assert cal.predict(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [0.0, 0.5, 0.5, 1.0]


def test_platt_is_monotone_and_recovers_slope() -> None:
    scores, labels = _noisy(1, 20000)
    cal = Platt.fit(scores, labels)
    assert 1.7 < cal.a < 2.3 and abs(cal.b) < 0.15
    assert np.all(np.diff(cal.predict(np.linspace(-4, 4, 50))) > 0)


def test_ece_and_precision_coverage() -> None:
    probs = np.array([0.9, 0.9, 0.1, 0.1])
    assert expected_calibration_error(probs, np.array([1, 1, 0, 0])) == pytest.approx(0.1)
    assert expected_calibration_error(probs, np.array([0, 0, 1, 1])) == pytest.approx(0.9)
    cov, prec = precision_coverage(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0]))
    assert cov.tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert prec.tolist() == pytest.approx([1, 1, 2 / 3, 0.75, 0.6])
    assert precision_at_coverage(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0]), 0.8) == 0.75


def _fitted(method: str = "isotonic") -> Calibration:
    scores, labels = _noisy(3)
    levels = np.arange(len(scores)) % 3
    return Calibration.fit(scores, labels, levels, "bi_encoder", CalibrationParams(method=method))


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_thresholds_reach_target_precision_on_dev(method: str) -> None:
    scores, labels = _noisy(3)
    levels = np.arange(len(scores)) % 3
    cal = _fitted(method)
    for level in range(3):
        thr = cal.threshold(level)
        assert thr is not None
        mask = levels == level
        probs = cal.probabilities(scores[mask], levels[mask])
        accepted = probs >= thr
        assert accepted.any()
        assert labels[mask][accepted].mean() >= 0.9


def test_round_trip_and_bad_files(tmp_path) -> None:
    cal = _fitted()
    path = tmp_path / "cal.json"
    cal.save(path)
    back = Calibration.load(path)
    grid = np.linspace(-3, 3, 40)
    for level in range(3):
        lv = np.full(len(grid), level)
        assert np.array_equal(back.probabilities(grid, lv), cal.probabilities(grid, lv))
    assert back.thresholds == cal.thresholds
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ValueError, match="not a tagindex calibration"):
        Calibration.load(tmp_path / "other.json")


def test_fit_refuses_single_class() -> None:
    with pytest.raises(ValueError, match="both correct and wrong"):
        Calibration.fit(np.array([0.1, 0.2]), np.array([1.0, 1.0]), np.array([0, 0]), "bi_encoder")


def _all_pass() -> Calibration:
    """Identity-like calibration: probability = score, threshold 0.5 at every level."""
    cal = Calibration("bi_encoder", levels={}, fallback=Isotonic([0.0, 1.0], [0.0, 1.0]))
    cal.thresholds = {"0": 0.5, "1": 0.5, "2": 0.5}
    return cal


def test_decide_modes_respect_the_hierarchy() -> None:
    by_id = {t.id: t for t in toy_tags()}
    cal = _all_pass()
    cands = [("cheese", 0.9), ("laptop", 0.7), ("dairy", 0.3), ("tech", 0.8), ("milk", 0.2)]
    closed = {a.tag: a for a in cal.decide(cands, by_id, "close")}
    assert set(closed) == {"cheese", "dairy", "food", "laptop", "computers", "tech"}
    assert closed["dairy"].ancestor_of == "cheese" and closed["dairy"].probability == pytest.approx(0.9)
    assert closed["tech"].ancestor_of is None  # assigned on its own
    pruned = {a.tag for a in cal.decide(cands, by_id, "prune")}
    assert pruned == {"tech"}  # cheese (parent dairy refused) and laptop (parent not a candidate) drop
    raw = {a.tag for a in cal.decide(cands, by_id, "none")}
    assert raw == {"cheese", "laptop", "tech"}
    with pytest.raises(ValueError, match="hierarchy"):
        cal.decide(cands, by_id, "sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("mode", ["close", "prune"])
def test_decisions_never_hold_a_child_without_its_parent(seed: int, mode: str) -> None:
    tags = toy_tags()
    by_id = {t.id: t for t in tags}
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(tags), size=6, replace=False)
    cands = [(tags[i].id, float(rng.random())) for i in chosen]
    assigned = {a.tag for a in _all_pass().decide(cands, by_id, mode)}  # type: ignore[arg-type]
    for tag in assigned:
        assert all(anc in assigned for anc in ancestors(tag, by_id)), (tag, assigned)
