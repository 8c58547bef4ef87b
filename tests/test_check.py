"""The agreement engine's own logic: error measures, failure handling, the drift judge."""

import math

import numpy as np
import pytest

from gan_backends import get_preset
from gan_backends.check import compare, run_check
from gan_backends.check.agreement import DRIFT_FACTOR, PairReport, Row, judge_by_drift


def test_compare_by_hand():
    rel, max_abs, note = compare(np.array([3.0, 4.0]), np.array([0.0, 8.0]))
    assert rel == pytest.approx(5.0 / 8.0)  # ||(3, -4)|| / ||(0, 8)||
    assert max_abs == 4.0 and note == ""
    assert compare(np.array([1e-3]), np.array([0.0]))[0] == pytest.approx(1e-3)  # zero reference: absolute


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_compare_names_non_finite(bad):
    rel, _, note = compare(np.array([1.0, bad]), np.array([1.0, 2.0]))
    assert math.isnan(rel) and "non-finite values in the first backend" in note


def test_compare_names_shape_mismatch():
    rel, _, note = compare(np.zeros((2, 3)), np.zeros((3, 2)))
    assert math.isnan(rel) and "(2, 3) vs (3, 2)" in note


def test_crashed_backend_is_reported_and_others_still_compared(monkeypatch, framework):
    from gan_backends.backends.numpy_reference import NumpyReference

    def boom(self, batch):
        raise RuntimeError("simulated crash in train_step")

    monkeypatch.setattr(NumpyReference, "train_step", boom)
    report = run_check(get_preset("tiny"), ["numpy", framework, "numpy"], steps=2, batch_size=4)
    assert not report.passed
    errors = [b.error for b in report.backends if b.error]
    assert errors and "simulated crash" in errors[0]
    assert [b.name for b in report.backends if b.error is None] == [framework]


def test_nan_run_fails_and_names_the_tensor(monkeypatch, framework):
    from gan_backends.backends.numpy_reference import NumpyReference

    original = NumpyReference.generate
    monkeypatch.setattr(NumpyReference, "generate", lambda self, z: original(self, z) * np.nan)
    report = run_check(get_preset("tiny"), [framework, "numpy"], steps=1, batch_size=4)
    (pair,) = report.pairs
    row = next(r for r in pair.rows if r.quantity == "G(z)")
    assert not row.passed and "non-finite values in the second backend" in row.note
    assert not report.passed


def _pair(rel: float) -> PairReport:
    return PairReport("a", "b", [Row("g params after 10 steps", "param", rel, rel, 1e-5, rel <= 1e-5)])


def test_drift_judge_accepts_float32_drift_when_float64_agrees():
    pair = _pair(3e-4)
    drift = {"a": {"g params after 10 steps": ("param", 2e-4)}, "b": {"g params after 10 steps": ("param", 1e-7)}}
    judge_by_drift(pair, drift, _pair(1e-15))
    assert pair.passed and pair.rows[0].tol == pytest.approx(DRIFT_FACTOR * 2e-4)


def test_drift_judge_rejects_when_float64_disagrees_or_gap_exceeds_drift():
    drift = {"a": {"g params after 10 steps": ("param", 2e-4)}, "b": {"g params after 10 steps": ("param", 0.0)}}
    pair = _pair(3e-4)
    judge_by_drift(pair, drift, _pair(1e-3))  # the float64 runs disagree: a real difference
    assert not pair.passed
    pair = _pair(1e-2)
    judge_by_drift(pair, drift, _pair(1e-15))  # far beyond float32's own drift
    assert not pair.passed
