"""The moving average of G's weights (``spec.ema``): the spec's rule, every backend against the
float64 reference and a hand-written recursion, the check's rows, checkpoints, resume, sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends import get_preset
from gan_backends.backends import get_backend
from gan_backends.backends.base import EmaState, TrainBatch
from gan_backends.cli import app
from gan_backends.params import init_params
from gan_backends.presets import tiny
from gan_backends.spec import EmaSpec, GANSpec, SpecError
from gan_backends.train import TrainConfig, load_checkpoint, sample, train

runner = CliRunner()
RULES = [
    EmaSpec(decay=0.9, start_step=0, debias=False),  # StyleGAN2-ADA's G_ema
    EmaSpec(decay=0.8, start_step=2, debias=True),  # optax's debiased form, started late
]


def _batches(spec: GANSpec, steps: int, batch: int = 8, seed: int = 3) -> list[TrainBatch]:
    rng = np.random.default_rng(seed)
    n, d = spec.n_critic, spec.data_shape
    return [
        TrainBatch(
            real=rng.standard_normal((n, batch, *d)),
            z_d=rng.standard_normal((n, batch, spec.latent_dim)),
            z_g=rng.standard_normal((batch, spec.latent_dim)),
        )
        for _ in range(steps)
    ]


def _by_hand(rule: EmaSpec, thetas: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The docstring's recursion written out again: θ₀ copied, then per G update t the copy
    (t <= start_step) or ē + w(θ - ē), w = (1 - β) or (1 - β)/(1 - β^(t - s))."""
    avg = {k: v.copy() for k, v in thetas[0].items()}
    for t, theta in enumerate(thetas[1:], start=1):
        if t <= rule.start_step:
            avg = {k: v.copy() for k, v in theta.items()}
            continue
        w = 1 - rule.decay
        if rule.debias:
            w /= 1 - rule.decay ** (t - rule.start_step)
        avg = {k: avg[k] + w * (theta[k] - avg[k]) for k in avg}
    return avg


# -- the spec ----------------------------------------------------------------------------------


def test_spec_round_trip_and_errors():
    spec = tiny().replace(ema=EmaSpec(decay=0.99, start_step=5, debias=True))
    again = GANSpec.from_json(spec.to_json())
    assert again.ema == spec.ema and again == spec
    assert "ema" not in tiny().to_dict()  # absent = no average; old spec files read the same
    assert GANSpec.from_dict({**tiny().to_dict(), "ema": None}).ema is None
    for bad, field in (
        ({"decay": 1.0}, "ema.decay"),
        ({"start_step": -1}, "ema.start_step"),
        ({"debias": 1}, "ema.debias"),
    ):
        with pytest.raises(SpecError, match=field):
            GANSpec.from_dict({**tiny().to_dict(), "ema": bad})
    with pytest.raises(SpecError, match="ema: .*decai"):
        GANSpec.from_dict({**tiny().to_dict(), "ema": {"decai": 0.9}})
    assert "0.99" in spec.ema.describe() and "debiased" in spec.ema.describe()


def test_debias_is_optax_quotient_written_as_a_lerp():
    """w_t = (1-β)/(1-β^k) makes the lerp equal m_k/(1-β^k) with m_k = βm + (1-β)θ from 0."""
    rule = EmaSpec(decay=0.7, start_step=0, debias=True)
    thetas = [np.array([0.0])] + [np.array([x]) for x in (1.0, -2.0, 0.5, 3.0)]
    avg, m = thetas[0].copy(), 0.0
    for t, theta in enumerate(thetas[1:], start=1):
        avg = avg + rule.weight(t) * (theta - avg)
        m = 0.7 * m + 0.3 * theta
        np.testing.assert_allclose(avg, m / (1 - 0.7**t), rtol=1e-14)
    assert rule.weight(1) == 1.0  # debiased: the first update copies


# -- every backend against the reference and the hand-written rule -----------------------------


@pytest.mark.parametrize("rule", RULES, ids=["plain", "debias-start2"])
def test_reference_follows_the_rule(rule):
    spec = tiny(dtype="float64").replace(ema=rule, n_critic=2)
    ref = get_backend("numpy")(spec, init_params(spec, 0))
    thetas = [{k: v for k, v in ref.get_params().items() if k.startswith("generator.")}]
    for batch in _batches(spec, 4):
        ref.train_step(batch)
        thetas.append({k: v for k, v in ref.get_params().items() if k.startswith("generator.")})
    ema = ref.get_ema()
    assert ema.steps == 4  # G updates, not D updates (n_critic 2)
    for name, value in _by_hand(rule, thetas).items():
        np.testing.assert_allclose(ema.params[name], value, rtol=0, atol=1e-15, err_msg=name)


@pytest.mark.parametrize(
    ("rule", "dtype"),
    [(EmaSpec(decay=0.9, start_step=2), "float32"), (RULES[1], "float64")],
    ids=["start2-float32", "debias-start2-float64"],
)
def test_backend_average_matches_the_reference(framework, rule, dtype):
    spec = tiny(dtype=dtype).replace(ema=rule, n_critic=2)
    params = init_params(spec, 0)
    ref = get_backend("numpy")(spec, params)
    backend = get_backend(framework)(spec, params)
    for batch in _batches(spec, 4):
        ref.train_step(batch)
        backend.train_step(batch)
    want, got = ref.get_ema(), backend.get_ema()
    assert got.steps == want.steps == 4 and list(got.params) == list(want.params)
    atol = 1e-12 if dtype == "float64" else 2e-6
    for name in want.params:
        assert got.params[name].dtype == np.dtype(dtype)  # kept in the parameters' dtype
        np.testing.assert_allclose(got.params[name], want.params[name], rtol=0, atol=atol, err_msg=name)
    # set_ema then one more step: the backend continues from a state it was given.
    backend.set_ema(EmaState(want.steps, want.params))
    ref.train_step(_batches(spec, 1, seed=9)[0])
    backend.set_params(ref.get_params())  # resets the average to a copy of G, step 0
    assert backend.get_ema().steps == 0
    np.testing.assert_allclose(backend.get_ema().params["generator.0.kernel"], ref.get_params()["generator.0.kernel"])


@pytest.mark.parametrize(("framework", "mode"), [("tensorflow", "xla"), ("jax", "jit")])
def test_compiled_modes_keep_the_average(framework, mode):
    """The update runs inside tf.function(jit_compile=True) and jax.jit (torch's compile modes
    compile the networks only; its cuda-graph capture needs a GPU)."""
    require_backend(framework)
    spec = tiny().replace(ema=RULES[1])
    params = init_params(spec, 0)
    ref = get_backend("numpy")(spec, params)
    backend = get_backend(framework)(spec, params, mode=mode)
    for batch in _batches(spec, 3):
        ref.train_step(batch)
        backend.train_step(batch)
    for name, value in ref.get_ema().params.items():
        np.testing.assert_allclose(backend.get_ema().params[name], value, rtol=0, atol=2e-6, err_msg=name)


def test_data_parallel_engines_refuse_it(tmp_path):
    spec = tiny().replace(ema=RULES[0])
    with pytest.raises(SpecError, match="data-parallel engines do not"):
        train(spec, TrainConfig("jax", "ring", steps=1, batch_size=8, devices=2), tmp_path)


# -- the check ---------------------------------------------------------------------------------


def test_check_compares_the_average(framework, monkeypatch):
    from gan_backends.check import run_check

    spec = tiny().replace(ema=EmaSpec(decay=0.9, start_step=1))
    report = run_check(spec, [framework, "numpy"], steps=3, batch_size=8)
    rows = [r for p in report.pairs for r in p.rows if r.quantity.startswith("generator_ema params")]
    lock = [r for r in report.lock_rows[framework] if r.quantity.startswith("generator_ema update")]
    assert len(rows) == 3 and len(lock) == 1 and all(r.passed for r in rows + lock), rows + lock
    assert lock[0].rel < 1e-5  # the lerp rounds once in every backend: agreement to rounding
    # A backend whose average forgets the copy at t <= start_step fails the lock-step row.
    monkeypatch.setattr(EmaSpec, "weight", lambda self, t: 1.0 - self.decay)
    broken = run_check(spec, [framework, "numpy"], steps=3, batch_size=8)
    assert not [r for r in broken.lock_rows[framework] if r.quantity.startswith("generator_ema")][0].passed


# -- checkpoints, resume, sample --------------------------------------------------------------


def _ring_spec() -> GANSpec:
    return get_preset("mlp-2d", g_hidden=(16,), d_hidden=(16,)).replace(ema=EmaSpec(decay=0.5, start_step=1))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resume_gives_the_uninterrupted_average(backend, tmp_path):
    require_backend(backend)
    spec = _ring_spec()
    straight = train(spec, TrainConfig(backend, "grid", steps=4, batch_size=16), tmp_path / "a")
    train(spec, TrainConfig(backend, "grid", steps=2, batch_size=16), tmp_path / "b")
    resumed = train(
        spec,
        TrainConfig(backend, "grid", steps=4, batch_size=16),
        tmp_path / "b",
        resume=tmp_path / "b" / "last.safetensors",
    )
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.ema.steps == b.ema.steps == 4
    for name in a.ema.params:
        np.testing.assert_array_equal(a.ema.params[name], b.ema.params[name], err_msg=name)
        assert not np.array_equal(a.ema.params[name], a.params[name])  # an average, not G


def test_sample_draws_the_average_by_default(tmp_path):
    spec = _ring_spec()
    result = train(spec, TrainConfig("numpy", "grid", steps=3, batch_size=16), tmp_path / "run")
    ckpt = load_checkpoint(result.checkpoint)
    z = np.random.default_rng(0).standard_normal((5, spec.latent_dim))
    want = {}
    for which, g in (("ema", ckpt.ema.params), ("raw", {})):
        # as sample loads them: in the spec's dtype (float32)
        model = get_backend("numpy")(spec, {k: v.astype(np.float32) for k, v in {**ckpt.params, **g}.items()})
        model.set_buffers(ckpt.buffers)
        want[which] = model.generate(z)
    _, default = sample(result.checkpoint, "numpy", noise=z)
    _, raw = sample(result.checkpoint, "numpy", noise=z, weights="raw")
    np.testing.assert_array_equal(default, want["ema"])
    np.testing.assert_array_equal(raw, want["raw"])
    assert not np.array_equal(default, raw)
    out = tmp_path / "s.npy"
    shown = runner.invoke(app, ["sample", str(result.checkpoint), "--backend", "numpy", "--out", str(out)])
    assert shown.exit_code == 0 and "--weights ema" in shown.output, shown.output
    shown = runner.invoke(
        app, ["sample", str(result.checkpoint), "--backend", "numpy", "--out", str(out), "--weights", "raw"]
    )
    assert shown.exit_code == 0 and "--weights raw" in shown.output, shown.output
    plain = train(
        get_preset("mlp-2d", g_hidden=(16,), d_hidden=(16,)),
        TrainConfig("numpy", "grid", steps=1, batch_size=16),
        tmp_path / "p",
    )
    refused = runner.invoke(
        app, ["sample", str(plain.checkpoint), "--backend", "numpy", "--out", str(out), "--weights", "ema"]
    )
    assert refused.exit_code == 2 and "no moving average" in refused.output, refused.output
    assert json.loads(json.dumps(ckpt.ema.steps)) == 3
