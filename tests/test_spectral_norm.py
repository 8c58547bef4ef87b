"""Spectral normalisation (``"spectral_norm"`` on Dense and Conv2D, gan_backends/spec/spectral.py):
the spec option, the float64 reference against the SVD and central differences, every framework
backend against the reference (forward, gradients, u/v over training steps, one lock-step check),
and the torch layer against torch's own ``torch.nn.utils.spectral_norm``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_backend
from harness import ADAM, assert_close, draw, make

from gan_backends.backends.numpy.spectral import kernel_grad, normalised_kernel
from gan_backends.params import buffer_shapes, init_buffers, init_params
from gan_backends.presets import get_preset
from gan_backends.spec import (
    Conv2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    Reshape,
    SpecError,
    SpectralNormSpec,
    Tanh,
)
from gan_backends.spec.spectral import v_from_torch, v_to_torch

SN = {"n_power_iterations": 1, "eps": 1e-12}


def sn_spec(dtype: str = "float64", iterations: int = 1) -> GANSpec:
    """A tiny SNGAN: hinge loss, D = SN Conv2D (stride 2, 'same'), LeakyReLU, SN Dense."""
    sn = {**SN, "n_power_iterations": iterations}
    return GANSpec(
        name="sn-tiny",
        data_shape=(4, 4, 2),
        latent_dim=3,
        generator=(Dense(units=32), Reshape(shape=(4, 4, 2)), Tanh()),
        discriminator=(
            Conv2D(filters=3, kernel=3, stride=2, padding="same", spectral_norm=sn),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1, spectral_norm=sn),
        ),
        loss=LossSpec(name="hinge"),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),
        init=InitSpec(scheme="normal", std=0.5),
    )


# -- the spec ------------------------------------------------------------------------------------


def test_option_parses_round_trips_and_names_its_field():
    spec = sn_spec()
    assert spec.discriminator[0].spectral_norm == SpectralNormSpec(n_power_iterations=1, eps=1e-12)
    assert GANSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["discriminator"][3]["spectral_norm"] == SN
    assert "spectral_norm" not in json.loads(spec.to_json())["generator"][0]  # absent = off
    assert buffer_shapes(spec) == {
        "discriminator.0.sn_u": (3,),
        "discriminator.0.sn_v": (18,),  # 3·3·2, ordered (kh, kw, in)
        "discriminator.3.sn_u": (1,),
        "discriminator.3.sn_v": (12,),
    }
    with pytest.raises(SpecError, match=r"Dense.spectral_norm.n_power_iterations"):
        Dense(units=2, spectral_norm={"n_power_iterations": 0})
    with pytest.raises(SpecError, match=r"Conv2D.spectral_norm: unknown field 'iterations'"):
        Conv2D(filters=2, kernel=3, spectral_norm={"iterations": 2})
    with pytest.raises(SpecError, match=r"Dense.spectral_norm.eps"):
        Dense(units=2, spectral_norm={"eps": -1})
    with pytest.raises(SpecError, match=r"discriminator layer 0 Conv2D.*spectrally normalised"):
        spec.replace(loss=LossSpec(name="wasserstein", penalty="wgan_gp"))


def test_initial_vectors_are_unit_deterministic_and_per_seed():
    spec = sn_spec()
    a, b = init_buffers(spec), init_buffers(spec)
    for name, value in a.items():
        np.testing.assert_array_equal(value, b[name])
        assert np.linalg.norm(value) == pytest.approx(1.0, abs=1e-15)
    assert not np.allclose(init_buffers(spec, seed=1)["discriminator.0.sn_v"], a["discriminator.0.sn_v"])


def test_v_layout_matches_torchs_conv_matrix_columns(rng):
    kernel = rng.standard_normal((3, 3, 2, 4))  # HWIO
    v = rng.standard_normal(18)
    w_canonical = kernel.reshape(-1, 4).T
    w_torch = kernel.transpose(3, 2, 0, 1).reshape(4, -1)  # Conv2d.weight (OIHW).reshape(out, -1)
    np.testing.assert_allclose(w_torch @ v_to_torch(v, kernel.shape), w_canonical @ v, rtol=1e-14)
    np.testing.assert_array_equal(v_from_torch(v_to_torch(v, kernel.shape), kernel.shape), v)


# -- the reference -------------------------------------------------------------------------------


def test_reference_sigma_converges_to_the_largest_singular_value(rng):
    layer = Dense(units=4, spectral_norm={"n_power_iterations": 200})
    kernel = rng.standard_normal((6, 4))
    u, v = rng.standard_normal(4), rng.standard_normal(6)
    w_sn, cache = normalised_kernel(layer, {"kernel": kernel, "sn_u": u, "sn_v": v}, training=True)
    top = np.linalg.svd(kernel, compute_uv=False)[0]
    assert cache.sigma == pytest.approx(top, rel=1e-12)
    assert np.linalg.svd(w_sn, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-12)
    # Inference: no iteration, σ = uᵀ W v from what is stored.
    _, frozen = normalised_kernel(layer, {"kernel": kernel, "sn_u": u, "sn_v": v}, training=False)
    assert frozen.sigma == pytest.approx(u @ kernel.T @ v, rel=1e-14)


@pytest.mark.parametrize("layer_kind", ["dense", "conv"])
def test_reference_kernel_gradient_by_central_differences(rng, layer_kind):
    """dL/dW = (G − ⟨G, W_sn⟩ u vᵀ)/σ against central differences of L(W) = ⟨R, W/σ(W)⟩ with
    u, v held (an inference call: σ = uᵀ W v from the stored vectors)."""
    shape = (5, 3) if layer_kind == "dense" else (2, 2, 3, 4)
    layer = Dense(units=3, spectral_norm=SN) if layer_kind == "dense" else Conv2D(filters=4, kernel=2, spectral_norm=SN)
    kernel, r = rng.standard_normal(shape), rng.standard_normal(shape)
    out, fan_in = shape[-1], int(np.prod(shape[:-1]))
    p = {"kernel": kernel, "sn_u": rng.standard_normal(out), "sn_v": rng.standard_normal(fan_in)}
    _, warm = normalised_kernel(layer, p, training=True)  # unit vectors near the top pair, as in training
    p.update(sn_u=warm.u, sn_v=warm.v)

    def loss(k: np.ndarray) -> float:
        return float(np.sum(r * normalised_kernel(layer, {**p, "kernel": k}, training=False)[0]))

    _, cache = normalised_kernel(layer, p, training=False)
    got = kernel_grad(r, cache)
    want = np.zeros(shape)
    h = 1e-6
    for idx in np.ndindex(shape):
        step = np.zeros(shape)
        step[idx] = h
        want[idx] = (loss(kernel + step) - loss(kernel - step)) / (2 * h)
    assert_close(got, want, 1e-8, "kernel gradient")


# -- every backend against the reference ---------------------------------------------------------


def _reference(spec: GANSpec, params: dict):
    return make("numpy", spec, params)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backend_matches_reference(framework, dtype):
    """Forward (inference and training), loss terms, gradients, and u/v and parameters over two
    training steps, from the same parameters and vectors."""
    spec = sn_spec(dtype)
    spec64 = sn_spec("float64")
    rng = np.random.default_rng(3)
    params = init_params(spec, 2)
    buffers = {k: v for k, v in init_buffers(spec, seed=5).items()}
    ref, own = _reference(spec64, params), make(framework, spec, params)
    for b in (ref, own):
        b.set_buffers(buffers)
    bound = 1e-12 if dtype == "float64" else 2e-5
    x = rng.uniform(-1, 1, (3, *spec.data_shape))
    assert_close(own.discriminate(x), ref.discriminate(x), bound, "discriminate (inference)")
    got = own.activations("discriminator", x, training=True)[-1]
    assert_close(got, ref.activations("discriminator", x, training=True)[-1], bound, "training-mode D")
    batch = draw(rng, spec, batch=4)
    real, z = batch.real[0], batch.z_g
    terms, grads = own.gradients(real, z)
    want_terms, want_grads = ref.gradients(real, z)
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(v, rel=bound, abs=bound), k
    for k, v in want_grads.items():
        assert_close(grads[k], v, bound * (1 if dtype == "float64" else 10), k)
    for k, v in ref.loss_terms(real, z).items():
        assert own.loss_terms(real, z)[k] == pytest.approx(v, rel=bound, abs=bound), k
    # None of those calls moved u or v.
    for k, v in own.get_buffers().items():
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)
    for step in range(2):
        batch = draw(rng, spec, batch=4)
        own.train_step(batch)
        ref.train_step(batch)
        for k, v in ref.get_buffers().items():
            assert_close(own.get_buffers()[k], v, bound * 10, f"step {step} {k}")
        for k, v in ref.get_params().items():
            assert_close(own.get_params()[k], v, bound * 100, f"step {step} {k}")
    # And the buffers moved: five training calls of D per step.
    assert not np.allclose(own.get_buffers()["discriminator.0.sn_v"], buffers["discriminator.0.sn_v"])


def test_reference_train_step_advances_u_once_per_call():
    """D(real), D(fake), then D(G(z)) in G's update: three power iterations per step, each
    from the last call's u (the reference's own bookkeeping, by hand)."""
    spec = sn_spec()
    params = init_params(spec, 2)
    ref = _reference(spec, params)
    start = ref.get_buffers()
    batch = draw(np.random.default_rng(0), spec, batch=4)
    ref.train_step(batch)
    kernel = params["discriminator.3.kernel"]
    p1 = ref.get_params()["discriminator.3.kernel"]
    u = start["discriminator.3.sn_u"]
    for w in (kernel, kernel, p1):  # the D update's two calls see p0, G's update D as updated
        v = w @ u / np.linalg.norm(w @ u)
        u = w.T @ v / np.linalg.norm(w.T @ v)
    assert_close(ref.get_buffers()["discriminator.3.sn_v"], v, 1e-14, "v")
    assert_close(ref.get_buffers()["discriminator.3.sn_u"], u, 1e-14, "u")


def test_lockstep_check_compares_the_vectors(framework):
    from gan_backends.check.agreement import run_check

    spec = sn_spec("float32")
    report = run_check(spec, ["numpy", framework], steps=2, batch_size=4, seed=0)
    assert report.passed, report
    rows = report.lock_rows[framework]
    assert len(rows) == 3 and "running statistics" in rows[-1].quantity and rows[-1].passed  # the buffers row
    assert len(report.lock.buffers[framework].rel) == 2


def test_check_starts_from_settled_vectors_whose_sigma_is_the_spectral_norm():
    """The check's start pair gives σ = uᵀWv near the top singular value (from NumPy's SVD), where
    the drawn pair's uᵀWv is a cancelling sum far below it (sngan-32's D(x) reached 1e16)."""
    from gan_backends.check.inputs import draw_inputs

    spec = get_preset("sngan-small")
    inputs = draw_inputs(spec, batch_size=2, steps=1, seed=0)
    drawn = init_buffers(spec, 0)
    names = [n[: -len("sn_u")] for n in inputs.buffers if n.endswith(".sn_u")]
    assert len(names) >= 5
    for prefix in names:
        kernel = inputs.params[prefix + "kernel"].astype(np.float64)
        w = kernel.reshape(-1, kernel.shape[-1]).T
        top = np.linalg.svd(w, compute_uv=False)[0]
        u, v = (inputs.buffers[prefix + k].astype(np.float64) for k in ("sn_u", "sn_v"))
        assert inputs.buffers[prefix + "sn_u"].dtype == np.float32
        assert 0.5 * top < u @ w @ v <= top * (1 + 1e-6), prefix
        u0, v0 = drawn[prefix + "sn_u"].astype(np.float64), drawn[prefix + "sn_v"].astype(np.float64)
        if w.shape[0] > 1:  # a 1-row matrix's u is ±1 either way
            assert abs(u0 @ w @ v0) < 0.5 * top, prefix
    for name, value in inputs.buffers.items():
        if name.endswith(("running_mean", "running_var")):
            assert np.array_equal(value, drawn[name]), name  # BatchNorm starts as every framework does


def test_check_sets_its_start_buffers_on_every_backend_and_twin(monkeypatch):
    require_backend("torch")
    from gan_backends.check import agreement

    seen: dict[str, dict[str, np.ndarray]] = {}
    collect = agreement.collect_values

    def spy(backend, inputs):
        seen[f"{backend.name}/{backend.dtype}"] = backend.get_buffers()
        return collect(backend, inputs)

    monkeypatch.setattr(agreement, "collect_values", spy)
    spec = sn_spec("float32")
    expected = agreement.draw_inputs(spec, batch_size=2, steps=1, seed=0).buffers
    agreement.run_check(spec, ["numpy", "torch"], steps=1, batch_size=2, seed=0, lockstep=False)
    assert sorted(seen) == ["numpy/float64", "torch/float32", "torch/float64"]
    for who, buffers in seen.items():
        for name, value in expected.items():
            np.testing.assert_array_equal(np.asarray(buffers[name], np.float64), value, err_msg=f"{who} {name}")


# -- the torch layer against torch's own spectral_norm --------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_torch_layer_matches_torch_spectral_norm(kind):
    require_backend("torch")
    import torch
    from torch import nn

    from gan_backends.backends.torch.layers import build_layer

    torch.manual_seed(0)
    if kind == "linear":
        layer, in_shape, x = Dense(units=3, spectral_norm=SN), (5,), torch.randn(4, 5, dtype=torch.float64)
        theirs = torch.nn.utils.spectral_norm(nn.Linear(5, 3).double())
    else:
        layer, in_shape = Conv2D(filters=3, kernel=3, padding=1, spectral_norm=SN), (5, 5, 2)
        x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
        theirs = torch.nn.utils.spectral_norm(nn.Conv2d(2, 3, 3, padding=1).double())
    ours = build_layer(layer, in_shape).double()
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight_orig", "weight_u", "weight_v", "bias"}
    ours.load_state_dict(theirs.state_dict())
    for training in (True, True, False):
        ours.train(training)
        theirs.train(training)
        y_ours, y_theirs = ours(x), theirs(x)
        torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=1e-14)
        for key in ("weight_u", "weight_v"):
            torch.testing.assert_close(ours.state_dict()[key], theirs.state_dict()[key], rtol=0, atol=1e-15)
    # The gradient through σ, as torch's.
    ours.train(True)
    theirs.train(True)
    (g_ours,) = torch.autograd.grad(ours(x).square().sum(), ours.weight_orig)
    (g_theirs,) = torch.autograd.grad(theirs(x).square().sum(), theirs.weight_orig)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-13, atol=0)


def test_torch_backend_state_dict_has_torchs_keys_and_conv_v_order():
    require_backend("torch")
    spec = sn_spec()
    backend = make("torch", spec, init_params(spec, 0))
    keys = set(backend.D.state_dict())
    assert {"0.weight_orig", "0.weight_u", "0.weight_v", "3.weight_orig", "3.weight_u", "3.weight_v"} <= keys
    canonical = init_buffers(spec, seed=4)
    backend.set_buffers(canonical)
    kernel = spec.discriminator[0].param_shapes((4, 4, 2))["kernel"]
    stored = backend.D.state_dict()["0.weight_v"].numpy()
    np.testing.assert_array_equal(stored, v_to_torch(canonical["discriminator.0.sn_v"], kernel))
    np.testing.assert_array_equal(backend.get_buffers()["discriminator.0.sn_v"], canonical["discriminator.0.sn_v"])


def test_a_preset_discriminator_with_spectral_norm_builds_everywhere(framework):
    """dcgan-small's critic with every Conv2D normalised and its BatchNorm dropped (SNGAN's
    critic has none): one float64 gradient against the reference."""
    base = get_preset("dcgan-small")
    layers = []
    for layer in base.discriminator:
        if isinstance(layer, Conv2D):
            fields = {k: v for k, v in layer.to_dict().items() if k != "type"}
            layers.append(Conv2D(**fields, spectral_norm=SN))
        elif type(layer).__name__ != "BatchNorm":
            layers.append(layer)
    spec = base.replace(discriminator=tuple(layers), numerics=Numerics(dtype="float64"))
    params = init_params(spec, 0)
    rng = np.random.default_rng(0)
    batch = draw(rng, spec, batch=2)
    _, want = _reference(spec, params).gradients(batch.real[0], batch.z_g)
    _, got = make(framework, spec, params).gradients(batch.real[0], batch.z_g)
    for k, v in want.items():
        assert_close(got[k], v, 1e-11, k)


# -- FLOPs ---------------------------------------------------------------------------------------


def test_flops_count_the_power_iteration_per_call_by_hand():
    """sn_spec's critic: Conv2D W (3, 18), N = 54; Dense W (1, 12), N = 12. Forward of a call
    it·(4N + 3(out + fan_in) + 4) + 3N + 2·out, backward 6N; per step D runs 2 calls with
    weight gradients and 1 without (n_critic 1, hinge)."""
    from gan_backends.bench.flops import step_flops

    conv_f, conv_b = (4 * 54 + 3 * 21 + 4) + 3 * 54 + 2 * 3, 6 * 54  # 451, 324
    dense_f, dense_b = (4 * 12 + 3 * 13 + 4) + 3 * 12 + 2 * 1, 6 * 12  # 129, 72
    want = 3 * conv_f + 2 * conv_b + 3 * dense_f + 2 * dense_b
    assert want == 2532
    spec = sn_spec()
    plain = spec.replace(
        discriminator=tuple(
            type(layer)(**{k: v for k, v in layer.to_dict().items() if k not in ("type", "spectral_norm")})
            for layer in spec.discriminator
        )
    )
    for batch in (1, 7):
        with_sn, without = step_flops(spec, batch), step_flops(plain, batch)
        assert with_sn.matmul == without.matmul
        assert with_sn.elementwise - without.elementwise == want
    twice = sn_spec(iterations=2)
    extra = (4 * 54 + 3 * 21 + 4) * 3 + (4 * 12 + 3 * 13 + 4) * 3  # one more iteration, three calls
    assert step_flops(twice, 1).elementwise - step_flops(spec, 1).elementwise == extra
