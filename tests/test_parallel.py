"""Data parallelism on each framework's own engine: two devices against one.

For torch (DDP over gloo, two spawned processes), TensorFlow (MirroredStrategy over two logical
CPUs) and JAX (jit over a two-device host Mesh; shard_map for per-device BatchNorm), one training
step (one D update, one G update) on a global batch of 16 (8 per device), in a subprocess:

- ``mlp`` (no BatchNorm) and ``dcgan-small`` with synchronised BatchNorm equal the framework's
  single-device ``train_step`` on the whole batch: parameters, running statistics, loss terms;
- ``dcgan-small`` with per-device BatchNorm equals the per-device reference assembled from
  single-device gradients on each device's rows (``parallel/reference.py``), and differs from
  the whole-batch step by orders of magnitude more than float32 rounding.

The framework-free tests pin the pieces the proof stands on: the batch split, the reference
itself (one device = the backend's own step; per-device BatchNorm really differs), the result
files (no pickle).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends import FRAMEWORKS, TrainBatch, get_backend
from gan_backends.parallel import local_rows, shard_batch
from gan_backends.parallel.agreement import check_framework, draw_inputs, standard_cases
from gan_backends.parallel.reference import StepResult, global_step, max_relative_error, per_device_step
from gan_backends.parallel.run import read_results, write_results
from gan_backends.presets import get_preset
from gan_backends.spec import GANSpec, Numerics, SpecError

DEVICES = 2
ENGINES = {"torch": "DistributedDataParallel", "tensorflow": "MirroredStrategy", "jax": "jax.jit + NamedSharding"}


# launched engines: tens of seconds each. One xdist worker takes the whole module, so each
# framework's module-scoped engine run happens once (split over two workers it ran twice).
pytestmark = [pytest.mark.long, pytest.mark.xdist_group("parallel-engines")]


# -- framework-free ----------------------------------------------------------------------------


def test_shard_batch_gives_each_device_its_contiguous_rows():
    spec = get_preset("mlp")
    _, batch = draw_inputs(spec, 6)
    parts = [shard_batch(batch, k, 3) for k in range(3)]
    np.testing.assert_array_equal(np.concatenate([p.real for p in parts], axis=1), batch.real)
    np.testing.assert_array_equal(np.concatenate([p.z_g for p in parts]), batch.z_g)
    assert local_rows(6, 2, 3) == slice(4, 6)
    with pytest.raises(ValueError, match="does not split evenly"):
        local_rows(7, 0, 2)


def test_the_cross_device_batchnorm_is_a_checked_spec_field():
    spec = get_preset("dcgan-small")
    assert spec.data_parallel.batchnorm == "sync"  # the default keeps N devices = one device
    data = spec.to_dict()
    data["data_parallel"] = {"batchnorm": "per_device"}
    assert GANSpec.from_dict(data).data_parallel.batchnorm == "per_device"
    data["data_parallel"] = {"batchnorm": "global"}
    with pytest.raises(SpecError, match="data_parallel.batchnorm must be one of sync, per_device"):
        GANSpec.from_dict(data)


def _small_numpy_case() -> tuple:
    """dcgan-small on the float64 reference, batch 4: the reference's self-checks run fast."""
    spec = get_preset("dcgan-small").replace(numerics=Numerics(dtype="float64"))
    params, batch = draw_inputs(spec, 4, seed=1)
    return spec, params, batch


def test_per_device_reference_on_one_device_is_the_backends_own_step():
    """per_device_step assembles a step from gradients, NumPy Adam and folded statistics; on one
    device it must reproduce the backend's train_step (float64: to rounding)."""
    spec, params, batch = _small_numpy_case()
    cls = get_backend("numpy")
    assembled = per_device_step(cls(spec, params), batch, devices=1)
    own = global_step(cls(spec, params), batch)
    assert max_relative_error(assembled.params, own.params)[0] < 1e-12
    assert max_relative_error(assembled.buffers, own.buffers)[0] < 1e-12
    assert all(abs(assembled.losses[k] - own.losses[k]) < 1e-12 for k in own.losses)


def test_per_device_batchnorm_is_a_different_step():
    """With BatchNorm, statistics of each device's rows are not those of the whole batch."""
    spec, params, batch = _small_numpy_case()
    cls = get_backend("numpy")
    split = per_device_step(cls(spec, params), batch, devices=2)
    whole = global_step(cls(spec, params), batch)
    assert max_relative_error(split.buffers, whole.buffers)[0] > 1e-2
    assert max_relative_error(split.params, whole.params)[0] > 1e-3


def test_results_round_trip_without_pickle(tmp_path):
    result = StepResult({"generator.0.kernel": np.ones((2, 3), np.float32)}, {}, {"g_loss": 0.5})
    write_results(tmp_path / "out.npz", {"case": result}, {"case": {"engine": "x"}})
    with np.load(tmp_path / "out.npz", allow_pickle=False) as data:
        assert "meta" in data.files
    results, meta = read_results(tmp_path / "out.npz")
    np.testing.assert_array_equal(results["case"].params["generator.0.kernel"], result.params["generator.0.kernel"])
    assert results["case"].losses == {"g_loss": 0.5} and meta == {"case": {"engine": "x"}}


# -- two devices on each framework's engine ----------------------------------------------------


@pytest.fixture(scope="module", params=FRAMEWORKS)
def checked(request) -> tuple[str, list, dict]:
    """One subprocess per framework runs every case; the references run here."""
    require_backend(request.param)
    rows, meta = check_framework(request.param, standard_cases(DEVICES, batch_per_device=8), DEVICES)
    return request.param, rows, meta


def _report(rows) -> str:
    return "\n".join(f"{r.case} {r.kind} vs {r.against}: {r.error:.2e} ({r.worst}) bound {r.bound:.0e}" for r in rows)


def test_each_framework_runs_on_its_own_engine_over_two_devices(checked):
    framework, _, meta = checked
    for case, info in meta.items():
        assert info["engine"].startswith(ENGINES[framework]), (case, info)
        devices = info["devices"]
        assert (devices if isinstance(devices, int) else len(devices)) == DEVICES
    assert "shard_map" in meta["dcgan-small-per_device"]["engine"] or framework != "jax"


def test_without_or_with_synchronised_batchnorm_two_devices_equal_one(checked):
    """mlp and dcgan-small (sync): the two-device step is the one-device step on the whole batch."""
    _, rows, _ = checked
    mine = [r for r in rows if r.case in ("mlp-sync", "dcgan-small-sync")]
    assert {(r.case, r.kind) for r in mine} >= {("mlp-sync", "params"), ("dcgan-small-sync", "buffers")}
    assert all(r.passed for r in mine), _report(mine)


def test_synchronised_batchnorm_inside_residual_blocks_two_devices_equal_one(checked):
    """sngan-small's G (BatchNorm in every block's main branch, spectral norm in D), sync: each
    block's BatchNorm on global statistics too. With only the networks' own BatchNorm layers
    converted (torch's and TF's engines before), the blocks' running statistics missed the
    one-device step's by 1.16 and G's parameters by 0.71 (JAX's global program was right)."""
    _, rows, _ = checked
    mine = [r for r in rows if r.case == "sngan-small-blocks-sync"]
    assert {r.kind for r in mine} == {"params", "buffers", "losses"}
    assert all(r.passed for r in mine), _report(mine)


def test_several_critic_updates_with_a_gradient_penalty_two_devices_equal_one(checked):
    """n_critic = 3, WGAN-GP (each device differentiates its own input gradients), float64."""
    _, rows, _ = checked
    mine = [r for r in rows if r.case == "mlp-wgan-gp-ncritic3-float64"]
    assert {r.kind for r in mine} == {"params", "losses"}
    assert all(r.passed for r in mine), _report(mine)


def test_per_device_batchnorm_equals_the_per_device_reference(checked):
    _, rows, _ = checked
    mine = [r for r in rows if r.case == "dcgan-small-per_device" and r.against == "per_device"]
    assert {r.kind for r in mine} == {"params", "buffers", "losses"}
    assert all(r.passed for r in mine), _report(mine)


def test_per_device_batchnorm_is_not_the_whole_batch_step(checked):
    _, rows, _ = checked
    mine = {r.kind: r for r in rows if r.case == "dcgan-small-per_device" and r.against == "global"}
    assert mine["buffers"].error > 1e-2, _report(mine.values())
    assert mine["params"].error > 1e-3, _report(mine.values())
    assert mine["losses"].error > 1e-4, _report(mine.values())


def test_train_batch_is_the_backend_boundary():
    """The runner's inputs are TrainBatch arrays as every backend takes them (shapes validated)."""
    spec = get_preset("dcgan-small")
    _, batch = draw_inputs(spec, 4)
    assert isinstance(batch, TrainBatch)
    batch.validate(spec)
