"""What one framework has and the others do not, for the conv features: torch's native ports
and state_dict names and its compile mode, TensorFlow's own torch-form optimiser and BatchNorm
classes and its function/xla/eager modes, JAX's jit against eager (bf16 rounding, whole steps)
and its check of a loaded optimiser state. The contracts every framework shares are in
test_conv_contract*.py; the scenarios re-run here in other modes come from tests/harness.py.
Each test asks for its framework (skipped when it is not installed, failed when
``GAN_BACKENDS_REQUIRE`` names it)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend
from harness import (
    ADAM,
    BF16_CASES,
    MINI_DCGAN_GENERATOR,
    PENALTY_CASES,
    BatchNormCase,
    check_bf16,
    check_float32,
    check_penalty,
    check_running_statistics,
    draw,
    layer_output,
    make,
    penalty_spec,
    randomised,
)
from numeric import optimizer_update, rel_l2, rel_max_abs

from gan_backends.backends import TrainBatch, get_backend, load_part
from gan_backends.params import buffer_shapes, init_buffers, init_params
from gan_backends.presets import get_preset
from gan_backends.spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Tanh,
)


@pytest.fixture
def torch_():
    require_backend("torch")
    import torch

    return torch


@pytest.fixture
def tf():
    require_backend("tensorflow")
    import tensorflow

    return tensorflow


@pytest.fixture
def jax_() -> None:
    require_backend("jax")


# -- torch -----------------------------------------------------------------------------------------


def _torch_port(torch_, module, params: dict, x: np.ndarray) -> np.ndarray:
    """A native torch module, weights from the canonical tree (OIHW / (in, out, kh, kw) are both
    ``kernel.transpose(3, 2, 0, 1)``), run on NHWC ``x`` through NCHW."""
    with torch_.no_grad():
        module.weight.copy_(torch_.from_numpy(params["generator.1.kernel"].transpose(3, 2, 0, 1).copy()))
        module.bias.copy_(torch_.from_numpy(params["generator.1.bias"]))
        return module(torch_.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def test_same_conv_transpose_is_not_the_common_torch_port(torch_, rng):
    """Keras/Flax 'same' k=5 s=2 keeps full[1:-2]; torch's ConvTranspose2d(5, 2, padding=2,
    output_padding=1) keeps full[2:-1]: the same values one pixel shifted."""
    x = rng.standard_normal((3, 4, 4, 3))
    y, params, _ = layer_output("torch", ConvTranspose2D(filters=2, kernel=5, stride=2, padding="same"), x, rng)
    ported = _torch_port(torch_, torch_.nn.ConvTranspose2d(3, 2, 5, 2, padding=2, output_padding=1).double(), params, x)
    assert ported.shape == y.shape == (3, 8, 8, 2)
    assert rel_l2(ported, y) > 0.1
    assert rel_l2(ported[:, :-1, :-1], y[:, 1:, 1:]) < 1e-13


def test_stride_two_same_conv_is_not_torch_padding_one(torch_, rng):
    x = rng.standard_normal((3, 8, 8, 2))
    y, params, _ = layer_output("torch", Conv2D(filters=2, kernel=3, stride=2, padding="same"), x, rng)
    ported = _torch_port(torch_, torch_.nn.Conv2d(2, 2, 3, 2, padding=1).double(), params, x)
    assert ported.shape == y.shape == (3, 4, 4, 2)
    assert rel_l2(ported, y) > 0.1  # the window starts one pixel earlier


def test_state_dict_keys_are_canonical_names(torch_):
    spec = get_preset("dcgan-small", dtype="float64")
    params = init_params(spec, 0)
    backend = make("torch", spec, params)
    for net, module in (("generator", backend.G), ("discriminator", backend.D)):
        for key, value in module.state_dict().items():
            idx, attr = key.split(".")
            if attr == "num_batches_tracked":
                continue
            layer = spec.layers(net)[int(idx)]
            if attr in ("running_mean", "running_var"):
                np.testing.assert_array_equal(value.numpy(), init_buffers(spec)[f"{net}.{idx}.{attr}"])
                continue
            short = "bias" if attr == "bias" else "scale" if isinstance(layer, BatchNorm) else "kernel"
            canonical = params[f"{net}.{idx}.{short}"]
            if short == "kernel":  # Conv OIHW / ConvTranspose (in, out, kh, kw) from canonical
                canonical = canonical.transpose(3, 2, 0, 1)
            np.testing.assert_array_equal(value.numpy(), canonical)
    assert set(backend.get_buffers()) == set(buffer_shapes(spec))


def test_set_buffers_reach_the_state_dict(torch_, rng):
    spec = BatchNormCase("conv").spec
    backend = make("torch", spec, init_params(spec, 0))
    new = {k: rng.uniform(0.5, 2.0, v.shape) for k, v in backend.get_buffers().items()}
    backend.set_buffers(new)
    assert backend.G.state_dict()["2.running_var"].numpy().tolist() == new["generator.2.running_var"].tolist()


@pytest.mark.slow
@pytest.mark.xdist_group("torch-compile")  # one worker pays inductor's start-up
def test_running_statistics_under_torch_compile(torch_):
    """The ``conv`` case holds both running-variance conventions (G unbiased, D biased)."""
    check_running_statistics("torch", BatchNormCase("conv"), mode="compile")


@pytest.mark.slow
@pytest.mark.xdist_group("torch-compile")  # one worker pays inductor's start-up
@pytest.mark.parametrize(("loss", "penalty", "weight"), PENALTY_CASES, ids=[c[1] for c in PENALTY_CASES])
def test_penalty_under_torch_compile(torch_, loss, penalty, weight):
    """The penalty's D call runs eagerly (torch.compile has no double backward). The gradient
    against differences of the backend's own loss is the eager contract's."""
    check_penalty("torch", loss, penalty, weight, mode="compile", own_differences=False)


# -- TensorFlow ------------------------------------------------------------------------------------

RMSPROP_CASES = [
    RMSpropSpec(lr=1e-2),
    RMSpropSpec(lr=1e-2, alpha=0.9, eps=1e-3, centered=True),
    RMSpropSpec(lr=1e-2, momentum=0.8, weight_decay=0.1),
    RMSpropSpec(lr=1e-2, alpha=0.5, momentum=0.5, centered=True, weight_decay=0.01),
]
SGD_CASES = [
    SGDSpec(lr=0.1),
    SGDSpec(lr=0.1, momentum=0.9),
    SGDSpec(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
]


@pytest.mark.parametrize("opt", RMSPROP_CASES + SGD_CASES, ids=lambda s: repr(s))
def test_tensorflow_torch_form_optimizers(tf, opt, rng):
    """TensorFlow's own classes for torch's updates (Keras' differ), on given gradients."""
    optim = load_part("tensorflow", "optim")
    cls = optim.TorchFormRMSprop if isinstance(opt, RMSpropSpec) else optim.TorchFormSGD
    p = rng.standard_normal((3, 2))
    var = tf.Variable(p)
    optimizer = cls(opt, [var], "opt")
    state: dict = {}
    for step in range(1, 5):
        g = rng.standard_normal(p.shape)
        optimizer.apply([tf.constant(g)])
        p = optimizer_update(opt, p, g, state, step)
        assert rel_max_abs(var.numpy(), p) < 1e-14
    assert int(optimizer.step.numpy()) == 4
    assert set(optimizer.slots) == set(state)
    for slot, value in state.items():
        assert rel_max_abs(optimizer.slots[slot][0].numpy(), value) < 1e-14, slot


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (6, 3)], ids=["image", "vector"])
@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
def test_tensorflow_batchnorm_layer_updates_only_when_asked(tf, shape, running_var, rng):
    """TensorFlow's BatchNorm module updates its statistics in training mode only with
    ``update_stats`` (the backend asks in train_step alone)."""
    module = load_part("tensorflow", "layers").build_layer(
        BatchNorm(momentum=0.25, eps=1e-3, running_var=running_var), shape[1:], tf.float64, "layer"
    )
    w = {}
    for name, var in module.params().items():
        w[name] = rng.standard_normal(var.shape)
        var.assign(w[name])
    x = rng.standard_normal(shape) * 2.0 + 5.0
    n = int(np.prod(shape[:-1]))
    axes = tuple(range(len(shape) - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    normed = (x - mean) / np.sqrt(var + 1e-3) * w["scale"] + w["bias"]
    assert rel_max_abs(module(tf.constant(x), training=True).numpy(), normed) < 1e-13
    np.testing.assert_array_equal(module.running_mean.numpy(), 0.0)
    np.testing.assert_array_equal(module.running_var.numpy(), 1.0)
    module(tf.constant(x), training=True, update_stats=True)
    stored = var * n / (n - 1) if running_var == "unbiased" else var
    assert rel_max_abs(module.running_mean.numpy(), 0.25 * mean) < 1e-13  # momentum = weight of the NEW value
    assert rel_max_abs(module.running_var.numpy(), 0.75 * 1.0 + 0.25 * stored) < 1e-13
    rm, rv = module.running_mean.numpy(), module.running_var.numpy()
    want = (x - rm) / np.sqrt(rv + 1e-3) * w["scale"] + w["bias"]
    assert rel_max_abs(module(tf.constant(x)).numpy(), want) < 1e-13


@pytest.mark.parametrize("case", ["conv", "first"])
def test_running_statistics_in_tensorflow_eager_mode(tf, case):
    check_running_statistics("tensorflow", BatchNormCase(case), mode="eager", every_call=case == "conv")


def bn_conv_spec() -> GANSpec:
    return GANSpec(
        name="bn-conv",
        data_shape=(4, 4, 1),
        latent_dim=3,
        generator=(
            Reshape(shape=(1, 1, 3)),
            ConvTranspose2D(filters=3, kernel=2, stride=1, padding="valid", use_bias=False),
            BatchNorm(momentum=0.2),
            LeakyReLU(slope=0.2),
            ConvTranspose2D(filters=1, kernel=4, stride=2, padding=1),
            Tanh(),
        ),
        discriminator=(
            Conv2D(filters=2, kernel=4, stride=2, padding=1, use_bias=False),
            BatchNorm(running_var="biased"),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        n_critic=2,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.3),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec_fn", [bn_conv_spec, lambda: penalty_spec("wasserstein", "wgan_gp", 10.0)], ids=["batchnorm", "wgan_gp"]
)
def test_tensorflow_modes_agree(tf, spec_fn, rng):
    """function, xla and eager: one trajectory (parameters and running statistics) in float64."""
    spec = spec_fn()
    params = init_params(spec, 9)
    batches = [draw(rng, spec, batch=4, alpha=True) for _ in range(2)]
    results = {}
    for mode in get_backend("tensorflow").modes:
        backend = make("tensorflow", spec, params, mode)
        terms, grads = backend.gradients(batches[0].real[0], batches[0].z_g, batches[0].alpha[0])
        for batch in batches:
            backend.train_step(batch)
        results[mode] = (terms, grads, backend.get_params(), backend.get_buffers())
    terms0, grads0, params0, buffers0 = results["function"]
    for mode in ("xla", "eager"):
        terms, grads, got, buffers = results[mode]
        assert terms == pytest.approx(terms0, rel=1e-12), mode
        assert max(rel_max_abs(grads[k], grads0[k]) for k in grads0) < 1e-12, mode
        assert max(rel_max_abs(got[k], params0[k]) for k in params0) < 1e-12, mode
        assert all(rel_max_abs(buffers[k], buffers0[k]) < 1e-12 for k in buffers0), mode


# -- JAX -------------------------------------------------------------------------------------------


def test_jax_eager_conv_float32_and_bf16(jax_, rng):
    """Eager mode rounds the bf16 product as jit does (XLA on a CPU would drop the rounding
    under jit without the backend's explicit reduce_precision: test_framework_differences_conv)."""
    check_float32("jax", rng, mode="eager")
    check_bf16("jax", *BF16_CASES[1], rng, mode="eager")


def test_jax_refuses_the_optimizer_state_of_another_optimiser(jax_):
    adam = get_preset("tiny", dtype="float64")
    rms = adam.replace(d_optimizer=RMSpropSpec(lr=1e-3, momentum=0.9))
    state = make("jax", adam, init_params(adam)).get_optimizer_state()
    assert set(state.slots) == {"m", "v"}
    backend = make("jax", rms, init_params(rms))
    assert set(backend.get_optimizer_state().slots) == {"m", "v", "momentum"}
    with pytest.raises(ValueError, match="slot 'momentum' of the discriminator"):
        backend.set_optimizer_state(state)


def mini_dcgan_wgan_gp() -> GANSpec:
    """BatchNorm in G, a WGAN-GP critic (no BatchNorm there)."""
    return GANSpec(
        name="mini-dcgan",
        data_shape=(6, 6, 1),
        latent_dim=4,
        generator=MINI_DCGAN_GENERATOR,
        discriminator=(
            Conv2D(filters=4, kernel=4, stride=2, padding=1),
            LeakyReLU(slope=0.2),
            Conv2D(filters=1, kernel=3, stride=1, padding="valid"),
            Flatten(),
        ),
        loss=LossSpec(name="wasserstein", penalty="wgan_gp"),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
    )


@pytest.mark.slow
def test_jax_jit_and_eager_agree(jax_, rng):
    """One step of a conv GAN with BatchNorm in G and a WGAN-GP critic, compiled and op by op
    (one case only: compiling conv gradients on a CPU takes seconds)."""
    spec = mini_dcgan_wgan_gp()
    params = randomised(spec, rng)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (1, 4, 6, 6, 1)),
        z_d=rng.standard_normal((1, 4, 4)),
        z_g=rng.standard_normal((4, 4)),
        alpha=rng.uniform(size=(1, 4)),
    )
    results = []
    for mode in ("jit", "eager"):
        backend = make("jax", spec, params, mode)
        terms = backend.train_step(batch)
        results.append((terms, backend.get_params(), backend.get_buffers()))
    (t1, p1, b1), (t2, p2, b2) = results
    assert t1 == pytest.approx(t2, rel=1e-12, abs=1e-14)
    for name in p1:
        assert rel_max_abs(p1[name], p2[name]) < 1e-12, name
    for name in b1:
        assert rel_max_abs(b1[name], b2[name]) < 1e-12, name
    assert set(b1) == {"generator.2.running_mean", "generator.2.running_var"}
