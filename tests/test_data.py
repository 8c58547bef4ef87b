"""The data sources of ``gan_backends.data``, checked against hand-derived facts.

Nothing here downloads: MNIST is written as tiny IDX files by the tests themselves, and the
digits come from scikit-learn's package (skipped when it is not installed).
"""

from __future__ import annotations

import gzip
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gan_backends import presets
from gan_backends.data import (
    DataError,
    Dataset,
    digits,
    generator_output_range,
    grid,
    load_array,
    load_dataset,
    mnist,
    mode_metrics,
    read_idx,
    ring,
)

S = math.sqrt(2.0)
# The 8 ring centers at radius 2 (Metz et al. 2017), angles 0, 45, ..., 315 degrees, written out.
RING_CENTERS = np.array([(2, 0), (S, S), (0, 2), (-S, S), (-2, 0), (-S, -S), (0, -2), (S, -S)], dtype=np.float64)
# The 25 grid centers {-4, -2, 0, 2, 4}^2 (VEEGAN, PacGAN).
GRID_CENTERS = np.array([(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], dtype=np.float64)
# P(|eps| < 3) for eps ~ N(0, I_2): |eps|^2 is chi-square with 2 degrees of freedom, CDF 1 - exp(-t/2).
P_WITHIN_3_STD_2D = 1.0 - math.exp(-4.5)


def nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.argmin(((points[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)


# --------------------------------------------------------------------------------------------
# Mixtures.


@pytest.mark.parametrize(
    ("make", "centers", "std"),
    [(lambda n, s: ring(n, s), RING_CENTERS, 0.02), (lambda n, s: grid(n, s), GRID_CENTERS, 0.05)],
    ids=["ring", "grid"],
)
def test_mixture_statistics(make, centers, std):
    n = 1000 * len(centers)
    ds = make(n, 0)
    assert ds.data.shape == (n, 2) and ds.data.dtype == np.float32
    assert ds.std == std
    # The stored centers are the hand-written ones (ring: the same order, angle 0 first; grid: as a set).
    if len(centers) == 8:
        np.testing.assert_allclose(ds.centers, centers, atol=1e-12)
    else:
        assert sorted(map(tuple, ds.centers.round(12))) == sorted(map(tuple, centers))
    # Every sample sits by the center its label names (modes are >= 1.5 apart, std <= 0.05).
    assign = nearest(ds.data.astype(np.float64), centers)
    np.testing.assert_array_equal(ds.centers[ds.labels].round(9), centers[assign].round(9))
    counts = np.bincount(assign, minlength=len(centers))
    expected = n / len(centers)
    assert counts.min() > 0.85 * expected and counts.max() < 1.15 * expected  # uniform weights, all modes used
    for k, c in enumerate(centers):
        pts = ds.data[assign == k].astype(np.float64)
        # The mean of m draws has standard error std / sqrt(m); allow 5 of them.
        np.testing.assert_allclose(pts.mean(axis=0), c, atol=5 * std / math.sqrt(len(pts)))
        np.testing.assert_allclose(pts.std(axis=0, ddof=1), [std, std], rtol=0.15)
    # value_range: symmetric about 0 and tight, m = max |x| (just beyond the outermost centers).
    lo, hi = ds.value_range
    outer = np.abs(centers).max()
    assert lo == -hi and hi == pytest.approx(float(np.abs(ds.data).max()))
    assert outer < hi < outer + 6 * std


def test_mixtures_repeat_by_seed():
    for make in (ring, grid):
        a, b, c = make(500, 7), make(500, 7), make(500, 8)
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert not np.array_equal(a.data, c.data)


def test_mixture_options():
    ds = ring(800, 1, modes=4, radius=1.0, std=0.01)
    np.testing.assert_allclose(ds.centers, [(1, 0), (0, 1), (-1, 0), (0, -1)], atol=1e-12)
    g = grid(800, 1, side=3, spacing=1.0, std=0.01)
    assert sorted(map(tuple, g.centers.round(12))) == [(x, y) for x in (-1, 0, 1) for y in (-1, 0, 1)]
    with pytest.raises(DataError, match="n must be a positive int"):
        ring(0, 0)


# --------------------------------------------------------------------------------------------
# Mode metrics.


def test_mode_metrics_all_at_centers():
    samples = np.repeat(RING_CENTERS, 10, axis=0)
    m = mode_metrics(samples, RING_CENTERS, 0.02)
    assert (m.modes_covered, m.total_modes, m.high_quality_fraction) == (8, 8, 1.0)
    assert m.per_mode_counts.tolist() == [10] * 8


def test_mode_metrics_three_of_eight():
    std = 0.02
    # 0.5 std away from centers 0, 2 and 5, in varied directions: high quality, near those three only.
    offsets = 0.5 * std * np.array([(1, 0), (0, -1), (S / 2, S / 2)])
    samples = np.concatenate([RING_CENTERS[k] + offsets for k in (0, 2, 5)])
    m = mode_metrics(samples, RING_CENTERS, std)
    assert m.modes_covered == 3
    assert m.high_quality_fraction == 1.0
    assert m.per_mode_counts.tolist() == [3, 0, 3, 0, 0, 3, 0, 0]


def test_mode_metrics_far_points():
    std = 0.02
    far = np.array([(0.0, 0.0), (10.0, 10.0), (2.0 + 4 * std, 0.0), (1.0, 1.0)])  # origin: 2 from every center
    m = mode_metrics(far, RING_CENTERS, std)
    assert (m.modes_covered, m.high_quality_fraction) == (0, 0.0)
    half = mode_metrics(np.concatenate([far, RING_CENTERS[:4]]), RING_CENTERS, std)
    assert (half.modes_covered, half.high_quality_fraction) == (4, 0.5)


def test_mode_metrics_threshold_and_min_count():
    std = 0.05
    c = GRID_CENTERS[12]  # (0, 0)
    assert tuple(c) == (0.0, 0.0)
    inside, outside = np.array([[2.9 * std, 0.0]]), np.array([[0.0, 3.1 * std]])
    assert mode_metrics(inside, GRID_CENTERS, std).high_quality_fraction == 1.0
    assert mode_metrics(outside, GRID_CENTERS, std).high_quality_fraction == 0.0
    assert mode_metrics(outside, GRID_CENTERS, std, threshold=4.0).high_quality_fraction == 1.0
    samples = np.array([GRID_CENTERS[0]] * 5 + [GRID_CENTERS[1]])
    assert mode_metrics(samples, GRID_CENTERS, std).modes_covered == 2
    assert mode_metrics(samples, GRID_CENTERS, std, min_count=2).modes_covered == 1
    assert mode_metrics(samples, GRID_CENTERS, std).to_dict()["per_mode_counts"][:3] == [5, 1, 0]


def test_mode_metrics_of_real_samples_match_the_chi_square_law():
    # A sample of the mixture itself is high quality with probability P(chi2_2 < 9) = 1 - e^-4.5.
    for ds in (ring(16000, 3), grid(25000, 3)):
        m = ds.mode_metrics(ds.data)
        assert m.modes_covered == m.total_modes
        se = math.sqrt(P_WITHIN_3_STD_2D * (1 - P_WITHIN_3_STD_2D) / len(ds))
        assert abs(m.high_quality_fraction - P_WITHIN_3_STD_2D) < 5 * se


def test_scaled_mixture_keeps_its_metrics():
    ds = ring(4000, 2)
    scaled = ds.scaled((-1.0, 1.0))
    m = ds.value_range[1]
    np.testing.assert_allclose(scaled.centers, RING_CENTERS / m, atol=1e-12)
    assert scaled.std == pytest.approx(0.02 / m)
    a, b = ds.mode_metrics(ds.data), scaled.mode_metrics(scaled.data)
    assert a.modes_covered == b.modes_covered == 8
    assert abs(a.high_quality_fraction - b.high_quality_fraction) <= 2 / len(ds)  # float32 rounding at the edge


def test_mode_metrics_needs_a_mixture():
    ds = Dataset(name="x", data=np.zeros((3, 2), np.float32), value_range=(0.0, 1.0))
    with pytest.raises(DataError, match="Gaussian mixture"):
        ds.mode_metrics(np.zeros((3, 2)))


# --------------------------------------------------------------------------------------------
# Digits.


def test_digits():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'gan-backends[data]')")
    ds = digits()
    assert ds.data.shape == (1797, 8, 8, 1) and ds.data.dtype == np.float32
    assert ds.value_range == (0.0, 16.0)
    assert ds.data.min() == 0.0 and ds.data.max() == 16.0
    np.testing.assert_array_equal(ds.data, np.round(ds.data))  # grey levels are integers 0..16
    # The class counts of the UCI optical-digits set that scikit-learn ships (1797 in all).
    assert np.bincount(ds.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    flat = ds.reshaped((64,)).scaled()
    assert flat.data.shape == (1797, 64) and flat.value_range == (-1.0, 1.0)
    assert flat.data.min() == -1.0 and flat.data.max() == 1.0


def test_data_module_imports_no_sklearn():
    code = "import sys, gan_backends.data; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --------------------------------------------------------------------------------------------
# MNIST IDX files.


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_mnist() -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 0, 0] = 255  # top-left pixel of the first image
    images[1, 27, 27] = 128  # bottom-right of the second
    images[2, 5, :] = np.arange(28) * 9  # a ramp along row 5 of the third
    return images, np.array([7, 0, 9], np.uint8)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("dot", [False, True], ids=["dash", "dot"])
def test_mnist_round_trip(tmp_path, tiny_mnist, gz, dot):
    images, labels = tiny_mnist
    sep = "." if dot else "-"
    for name, payload in (
        (f"train-images{sep}idx3-ubyte", idx_images(images)),
        ("train-labels-idx1-ubyte", idx_labels(labels)),
    ):
        path = tmp_path / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(payload) if gz else payload)
    ds = mnist(tmp_path)
    assert ds.data.shape == (3, 28, 28, 1) and ds.data.dtype == np.float32
    assert ds.value_range == (0.0, 255.0)
    np.testing.assert_array_equal(ds.data[..., 0], images.astype(np.float32))
    assert ds.data[0, 0, 0, 0] == 255.0 and ds.data[1, 27, 27, 0] == 128.0 and ds.data[2, 5, 27, 0] == 243.0
    assert ds.labels.tolist() == [7, 0, 9]
    assert load_dataset(f"mnist:{tmp_path}").data.shape == (3, 28, 28, 1)
    assert load_dataset(tmp_path).labels.tolist() == [7, 0, 9]


def test_mnist_test_split_and_missing_labels(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_images(images[:2]))
    ds = mnist(tmp_path, split="test")
    assert ds.data.shape == (2, 28, 28, 1) and ds.labels is None
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        mnist(tmp_path)  # no train files: the message lists the names looked for


def test_idx_bad_magic_names_the_file(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2049, 3, 28, 28) + images.tobytes())
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*bad magic number 2049.*2051"):
        mnist(tmp_path)


def test_idx_truncated_names_the_file(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    payload = idx_images(images)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(payload[:-10])
    # 16 header bytes + 3 * 28 * 28 = 2368 expected.
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated.*2368 bytes.*2358"):
        mnist(tmp_path)
    path.write_bytes(payload[:10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated header"):
        mnist(tmp_path)
    path.unlink()
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(payload)[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: not a readable gzip"):
        mnist(tmp_path)


def test_idx_label_count_must_match(tmp_path, tiny_mnist):
    images, labels = tiny_mnist
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_images(images))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(labels[:2]))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 2 labels for 3 images"):
        mnist(tmp_path)


def test_read_idx_generic(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(struct.pack(">BBBBII", 0, 0, 0x0D, 2, 2, 3) + np.arange(6, dtype=">f4").tobytes())
    np.testing.assert_array_equal(read_idx(path), np.arange(6, dtype=np.float32).reshape(2, 3))


# --------------------------------------------------------------------------------------------
# Array files.


def test_npy_uint8_images_round_trip_and_scale(tmp_path):
    images = np.arange(4 * 5 * 6, dtype=np.int64).reshape(4, 5, 6) % 256
    images[0, 0, 0], images[-1, -1, -1] = 0, 255
    np.save(tmp_path / "x.npy", images.astype(np.uint8))
    ds = load_array(tmp_path / "x.npy")
    assert ds.data.shape == (4, 5, 6, 1) and ds.value_range == (0.0, 255.0)
    np.testing.assert_array_equal(ds.data[..., 0], images)
    scaled = ds.scaled()
    assert scaled.value_range == (-1.0, 1.0)
    assert scaled.data[0, 0, 0, 0] == -1.0 and scaled.data[-1, -1, -1, 0] == 1.0
    np.testing.assert_allclose(scaled.data[..., 0], images / 127.5 - 1.0, atol=1e-6)  # x' = 2x/255 - 1
    assert ds.scaled((0.0, 1.0)).data.max() == 1.0
    assert load_dataset(tmp_path / "x.npy").data.shape == (4, 5, 6, 1)


def test_npz_float_and_keys(tmp_path):
    flat = np.array([[-0.5, 2.0], [1.0, 0.0], [0.25, 1.5]], np.float64)
    np.savez(tmp_path / "one.npz", samples=flat)
    ds = load_array(tmp_path / "one.npz")
    assert ds.data.shape == (3, 2) and ds.value_range == (-0.5, 2.0)
    np.testing.assert_array_equal(ds.data, flat.astype(np.float32))
    np.testing.assert_allclose(ds.scaled().data[:, 1], [1.0, -0.6, 0.6], atol=1e-6)  # -1 + 2 (x + 0.5) / 2.5
    assert load_array(tmp_path / "one.npz", value_range=(-1.0, 3.0)).value_range == (-1.0, 3.0)
    with pytest.raises(DataError, match="outside value_range"):
        load_array(tmp_path / "one.npz", value_range=(0.0, 1.0))

    np.savez(tmp_path / "two.npz", images=np.zeros((2, 3, 3, 3), np.uint8), labels=np.arange(2))
    with pytest.raises(DataError, match=r"two\.npz: holds several arrays \(images, labels\); choose one with key"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(DataError, match=r"no array 'nope'; the archive holds images, labels"):
        load_array(tmp_path / "two.npz", key="nope")
    assert load_array(tmp_path / "two.npz", key="images").data.shape == (2, 3, 3, 3)
    assert load_dataset(str(tmp_path / "two.npz"), key="images").sample_shape == (3, 3, 3)


def test_other_integer_dtype_uses_min_max(tmp_path):
    np.save(tmp_path / "i.npy", np.array([[3, 10], [5, 7]], np.int16))
    assert load_array(tmp_path / "i.npy").value_range == (3.0, 10.0)


def test_pickled_object_array_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: holds a pickled object array"):
        load_array(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"obj\.npz: holds a pickled object array"):
        load_array(tmp_path / "obj.npz")


def test_array_shape_checks(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    with pytest.raises(DataError, match=r"expected \(N, D\), \(N, H, W\) or \(N, H, W, C\), got shape \(5,\)"):
        load_array(tmp_path / "v.npy")
    np.save(tmp_path / "chw.npy", np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="channels-first"):
        load_array(tmp_path / "chw.npy")
    np.save(tmp_path / "const.npy", np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match="pass value_range"):
        load_array(tmp_path / "const.npy")


# --------------------------------------------------------------------------------------------
# Reshaping, scaling, validation.


def test_reshaped_fits_spec_shapes_and_names_both_shapes():
    data = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    ds = Dataset(name="imgs", data=data, value_range=(0.0, 31.0))
    flat = ds.reshaped((16,))
    assert flat.data.shape == (2, 16)
    np.testing.assert_array_equal(flat.data[1], np.arange(16, 32))  # row-major, channels-last
    assert flat.reshaped((4, 4, 1)).data.shape == (2, 4, 4, 1)
    spec = presets.mlp()
    with pytest.raises(DataError, match=r"\(4, 4, 1\) \(16 values\).*\(784,\) \(784 values\)"):
        ds.reshaped(spec.data_shape)


def test_dataset_validates_its_range():
    with pytest.raises(DataError, match="outside value_range"):
        Dataset(name="x", data=np.array([[0.0, 2.0]], np.float32), value_range=(0.0, 1.0))
    with pytest.raises(DataError, match="float32"):
        Dataset(name="x", data=np.zeros((2, 2)), value_range=(0.0, 1.0))
    with pytest.raises(DataError, match="NaN"):
        Dataset(name="x", data=np.array([[np.nan]], np.float32), value_range=(0.0, 1.0))


def test_generator_output_range():
    spec = presets.mlp()
    assert generator_output_range(spec) == (-1.0, 1.0)  # Dense -> Tanh
    assert generator_output_range(presets.mlp(data_shape=(28, 28, 1))) == (-1.0, 1.0)  # Tanh, then Reshape
    assert generator_output_range(spec.replace(generator=spec.generator[:-1])) is None  # linear output


# --------------------------------------------------------------------------------------------
# The sampler.


def indexed(n: int, shape: tuple[int, ...] = (3,)) -> Dataset:
    """Sample i is filled with the value i, so a batch says which samples it holds."""
    data = np.broadcast_to(np.arange(n, dtype=np.float32).reshape(n, *[1] * len(shape)), (n, *shape)).copy()
    return Dataset(name="indexed", data=data, value_range=(0.0, float(n - 1)))


def test_sampler_shapes():
    ds = indexed(50, (2, 2, 1))
    batch = ds.sampler(0).draw(5, 4)
    assert batch.shape == (5, 4, 2, 2, 1) and batch.dtype == np.float32
    # Each sample is intact: all its values equal its index.
    assert (batch == batch[..., :1, :1, :]).all()


@pytest.mark.parametrize(("n", "n_critic", "batch"), [(10, 2, 5), (7, 1, 3), (12, 5, 4)])
def test_sampler_epochs_cover_every_sample_once(n, n_critic, batch):
    sampler = indexed(n).sampler(123)
    draws = 3 * n // (n_critic * batch) + 1
    stream = np.concatenate([sampler.draw(n_critic, batch)[..., 0].reshape(-1) for _ in range(draws)])
    for epoch in range(3):  # every aligned block of n draws is a permutation of 0..n-1
        assert sorted(stream[epoch * n : (epoch + 1) * n].astype(int).tolist()) == list(range(n))
    assert not np.array_equal(stream[:n], stream[n : 2 * n])  # reshuffled each epoch


def test_sampler_repeats_by_seed_and_resumes():
    ds = indexed(37)
    a, b, c = ds.sampler(5), ds.sampler(5), ds.sampler(6)
    batches_a = [a.draw(2, 8) for _ in range(6)]
    batches_b = [b.draw(2, 8) for _ in range(6)]
    for x, y in zip(batches_a, batches_b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, c.draw(2, 8)) for x in batches_a)
    resumed = ds.sampler(5, start=3 * 16)  # after three draws of 2 x 8
    for x in batches_a[3:]:
        np.testing.assert_array_equal(resumed.draw(2, 8), x)
    assert a.drawn == 6 * 16 and a.epoch == 3  # 96 samples: two full epochs of 37 and part of a third


# --------------------------------------------------------------------------------------------
# Names.


def test_load_dataset_names():
    assert load_dataset("ring", n=40, seed=1).data.shape == (40, 2)
    assert load_dataset("grid", n=40).centers.shape == (25, 2)
    np.testing.assert_array_equal(load_dataset("ring", n=40, seed=1).data, ring(40, 1).data)
    with pytest.raises(DataError, match=r"unknown data set 'cifar'; choose one of ring, grid, digits, mnist:DIR"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="mnist:DIR"):
        load_dataset("mnist")


def test_load_dataset_directory_without_idx(tmp_path):
    with pytest.raises(DataError, match="without MNIST IDX files"):
        load_dataset(tmp_path)
