"""The residual block (``Residual``: ``y = main(x) + shortcut(x)``, spec/blocks.py): the spec's
shapes, names and errors; the float64 reference against central differences (penalty included)
and against the block written out by hand; every framework against the reference; the FLOP rule
by hand; the port of a residual torch state_dict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import ADAM, assert_close, draw, make

from gan_backends.params import buffer_shapes, init_buffers, init_params, param_shapes
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
    ReLU,
    Reshape,
    Residual,
    SpecError,
    Tanh,
    layer_at,
    walk,
)


def res_spec(dtype: str = "float64", loss: LossSpec | None = None) -> GANSpec:
    """A tiny ResNet GAN on 8×8×2 images. G: a pre-activation block with BatchNorm, a block whose
    branch flattens, applies a Dense and reshapes back (NHWC order inside torch's NCHW), then an
    upsampling transposed conv. D: a downsampling block with a learnable 1×1 Conv2D shortcut, an
    identity block holding a nested block, a Dense head."""
    return GANSpec(
        name="res-tiny",
        data_shape=(8, 8, 2),
        latent_dim=4,
        generator=(
            Dense(units=64),
            Reshape(shape=(4, 4, 4)),
            Residual(main=(BatchNorm(), ReLU(), Conv2D(filters=4, kernel=3, padding=1))),
            Residual(main=(Flatten(), Dense(units=64, use_bias=False), Reshape(shape=(4, 4, 4)))),
            ConvTranspose2D(filters=2, kernel=4, stride=2, padding=1),
            Tanh(),
        ),
        discriminator=(
            Conv2D(filters=3, kernel=3, padding=1),
            Residual(
                main=(LeakyReLU(slope=0.2), Conv2D(filters=4, kernel=3, stride=2, padding=1)),
                shortcut=(Conv2D(filters=4, kernel=1, stride=2),),
            ),
            Residual(main=(LeakyReLU(slope=0.2), Residual(main=(Conv2D(filters=4, kernel=3, padding="same"),)))),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ),
        loss=loss or LossSpec(name="wasserstein", penalty="wgan_gp", penalty_weight=10.0),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),
        init=InitSpec(scheme="normal", std=0.3),
    )


# -- the spec ------------------------------------------------------------------------------------


def test_names_nest_under_the_block_and_the_json_round_trips():
    spec = res_spec()
    shapes = param_shapes(spec)
    assert shapes["discriminator.1.main.1.kernel"] == (3, 3, 3, 4)
    assert shapes["discriminator.1.shortcut.0.bias"] == (4,)
    assert shapes["discriminator.2.main.1.main.0.kernel"] == (3, 3, 4, 4)
    assert shapes["generator.3.main.1.kernel"] == (64, 64)
    assert list(buffer_shapes(spec)) == ["generator.2.main.0.running_mean", "generator.2.main.0.running_var"]
    assert [p for p, _, _ in walk(spec.discriminator, spec.data_shape, "discriminator")][1:4] == [
        "discriminator.1.main.0",
        "discriminator.1.main.1",
        "discriminator.1.shortcut.0",
    ]
    assert layer_at(spec.discriminator, "2.main.1.main.0") == Conv2D(filters=4, kernel=3, padding="same")
    assert GANSpec.from_json(spec.to_json()) == spec
    assert spec.to_dict()["discriminator"][2]["shortcut"] == []


def test_errors_name_the_block_and_the_branch():
    data = json.loads(res_spec().to_json())
    data["discriminator"][1]["shortcut"] = []
    with pytest.raises(
        SpecError,
        match=r"discriminator layer 1 Residual.*main gives \(4, 4, 4\) but shortcut gives "
        r"\(8, 8, 3\); a learnable 1×1 Conv2D shortcut is needed",
    ):
        GANSpec.from_dict(data)
    data = json.loads(res_spec().to_json())
    data["generator"][2]["main"][2]["bias"] = True
    data["generator"][2]["mian"] = []
    with pytest.raises(SpecError) as err:
        GANSpec.from_dict(data)
    assert "generator layer 2 Residual: unknown field 'mian' (did you mean 'main'?)" in str(err.value)
    assert "generator layer 2 Residual main layer 2 Conv2D: unknown field 'bias' (did you mean 'use_bias'?)" in str(
        err.value
    )
    data = json.loads(res_spec().to_json())
    data["generator"][2]["main"][2]["kernel"] = 9
    with pytest.raises(SpecError, match=r"generator layer 2 Residual.*main layer 2 Conv2D.*kernel 9 is larger"):
        GANSpec.from_dict(data)
    # A penalty through a BatchNorm inside a critic's block is refused, with the path.
    bn_block = Residual(main=(BatchNorm(), Conv2D(filters=3, kernel=1)))
    with pytest.raises(SpecError, match="discriminator layer 1 Residual main layer 0 BatchNorm"):
        res_spec().replace(discriminator=(res_spec().discriminator[0], bn_block, *res_spec().discriminator[3:]))


# -- the reference -------------------------------------------------------------------------------


def _fd(f, params, name, index, h=1e-6):
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus[name][index] += h
    minus[name][index] -= h
    return (f(plus) - f(minus)) / (2 * h)


def test_reference_gradients_and_the_penalty_through_blocks_by_central_differences(rng):
    """WGAN-GP through the residual critic: the hand-written second-order parameter gradient of
    the penalty (and every other gradient, G's BatchNorm block included) against central
    differences of the forward in float64."""
    from gan_backends.backends.numpy.backend import NumpyReference

    spec = res_spec()
    params = init_params(spec, 3)
    real, z, alpha = rng.uniform(-1, 1, (3, 8, 8, 2)), rng.standard_normal((3, 4)), rng.uniform(0, 1, 3)
    terms, grads = NumpyReference(spec, params).gradients(real, z, alpha)
    assert terms["d_penalty"] > 0
    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"

        def f(p, which=which):
            return NumpyReference(spec, p).loss_terms(real, z, alpha)[which]

        for flat in rng.choice(grad.size, size=min(2, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            assert grad[index] == pytest.approx(_fd(f, params, name, index), rel=1e-6, abs=1e-9), (name, index)


def test_reference_block_is_main_plus_shortcut_by_hand(rng):
    """D's first block written out: leaky(h) conv'd at stride 2 plus the 1×1 stride-2 conv of h;
    G's BatchNorm inside its block moves its running statistics by the batch mean of the block's
    input (momentum 0.1)."""
    from gan_backends.backends.numpy.backend import NumpyReference

    spec = res_spec(loss=LossSpec(name="hinge"))
    params = init_params(spec, 4)
    ref = NumpyReference(spec, params)
    x = rng.uniform(-1, 1, (2, 8, 8, 2))
    acts = ref.activations("discriminator", x)
    h = acts[0]
    k, b = params["discriminator.1.main.1.kernel"], params["discriminator.1.main.1.bias"]
    a = np.pad(np.where(h > 0, h, 0.2 * h), ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = [
        [np.einsum("nijc,ijco->no", a[:, 2 * r : 2 * r + 3, 2 * c : 2 * c + 3], k) for c in range(4)] for r in range(4)
    ]
    main = np.array(windows).transpose(2, 0, 1, 3) + b
    short = (
        h[:, ::2, ::2] @ params["discriminator.1.shortcut.0.kernel"][0, 0] + params["discriminator.1.shortcut.0.bias"]
    )
    assert_close(acts[1], main + short, 1e-14, "block")
    z = rng.standard_normal((5, 4))
    block_input = ref.activations("generator", z, training=True)[1]
    ref._call(ref.g_net, z, True)
    want = 0.1 * block_input.mean(axis=(0, 1, 2))
    assert_close(ref.get_buffers()["generator.2.main.0.running_mean"], want, 1e-14, "running mean")


# -- the frameworks against the reference --------------------------------------------------------


def test_backend_matches_reference_in_float64(framework):
    """Forward (inference and training), loss terms, gradients (WGAN-GP through the residual
    critic included), then parameters and G's BatchNorm statistics inside its block over two
    training steps, from the same parameters and buffers: float64 to 1e-12."""
    spec = res_spec()
    rng = np.random.default_rng(5)
    params = init_params(spec, 6)
    buffers = {k: v + rng.uniform(0.1, 0.5, v.shape) for k, v in init_buffers(spec).items()}  # not the start
    ref, own = make("numpy", spec, params), make(framework, spec, params)
    for b in (ref, own):
        b.set_buffers(buffers)
    assert list(own.get_params()) == list(params)
    for k, v in own.get_buffers().items():
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)
    x, z = rng.uniform(-1, 1, (3, *spec.data_shape)), rng.standard_normal((3, spec.latent_dim))
    assert_close(own.discriminate(x), ref.discriminate(x), 1e-12, "D (inference)")
    assert_close(own.generate(z), ref.generate(z), 1e-12, "G (inference: running statistics)")
    for net, inp in (("generator", z), ("discriminator", x)):
        for i, (a, b) in enumerate(zip(own.activations(net, inp, training=True), ref.activations(net, inp, True))):
            assert_close(a, b, 1e-12, f"{net} layer {i} (training)")
    batch = draw(rng, spec, batch=4, alpha=True)
    terms, grads = own.gradients(batch.real[0], batch.z_g, batch.alpha[0])
    want_terms, want_grads = ref.gradients(batch.real[0], batch.z_g, batch.alpha[0])
    assert want_terms["d_penalty"] > 0
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    for k, v in want_grads.items():
        assert_close(grads[k], v, 1e-11, k)
    for step in range(2):
        batch = draw(rng, spec, batch=4, alpha=True)
        own.train_step(batch)
        ref.train_step(batch)
        for k, v in ref.get_buffers().items():
            assert_close(own.get_buffers()[k], v, 1e-12, f"step {step} {k}")
        for k, v in ref.get_params().items():
            assert_close(own.get_params()[k], v, 1e-10, f"step {step} {k}")
    assert not np.allclose(
        own.get_buffers()["generator.2.main.0.running_mean"], buffers["generator.2.main.0.running_mean"]
    )


def test_lockstep_check_in_float32(framework):
    """``check``'s lock-step comparison with the reference over two steps in float32: the
    residual critic (learnable 1×1 shortcut, identity and nested blocks, WGAN-GP) and G's
    BatchNorm block, at the float32 tolerances, the buffers row included."""
    from gan_backends.check.agreement import run_check

    report = run_check(res_spec("float32"), ["numpy", framework], steps=2, batch_size=4, seed=0)
    assert report.passed, report
    assert any("running statistics" in row.quantity for row in report.lock_rows[framework])


# -- FLOPs ---------------------------------------------------------------------------------------


def test_flops_of_a_block_by_hand():
    """D: Dense 6→5, a block (ReLU, Dense 5→5 | Dense 5→5 without bias), Dense 5→1; G: Dense 3→6.
    The block counts as one layer: both branches' products and biases; its ReLU and the add
    (5 outputs) forward; ReLU's mask and the sum of the branches' input gradients (5 inputs)
    backward. Every block layer needs its input gradient (a trainable layer precedes it)."""
    from gan_backends.bench.flops import layer_flops, step_flops

    block = Residual(main=(ReLU(), Dense(units=5)), shortcut=(Dense(units=5, use_bias=False),))
    spec = GANSpec(
        name="res-flops",
        data_shape=(6,),
        latent_dim=3,
        generator=(Dense(units=6),),
        discriminator=(Dense(units=5), block, Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
    )
    assert [f for f in layer_flops(spec) if f.layer == "Residual"][0].forward_matmul == (50 + 5) + 50
    assert [f for f in layer_flops(spec) if f.layer == "Residual"][0].forward_elementwise == 5 + 5
    g_fwd, d_fwd = 2 * 3 * 6 + 6, (60 + 5) + (100 + 5) + (10 + 1)
    d_dx_but_first, d_dx_all = 100 + 10, 60 + 100 + 10
    d_update = g_fwd + 2 * d_fwd + 2 * (d_fwd + d_dx_but_first)
    g_update = g_fwd + d_fwd + d_dx_all + g_fwd  # G's only layer needs no input gradient
    ew_d_update, ew_g_update = 2 * 10 + 2 * 10, 10 + 10
    params = (3 * 6 + 6) + (30 + 5) + (25 + 5 + 25) + (5 + 1)
    got = step_flops(spec, 4)
    assert got.matmul == 4 * (d_update + g_update) == 4 * 1421
    assert got.elementwise == 4 * (ew_d_update + ew_g_update) + 13 * params


# -- the port ------------------------------------------------------------------------------------


def test_a_residual_torch_state_dict_ports_to_flax_and_keras(tmp_path):
    """Both networks' torch ``state_dict`` (keys ``2.main.0.weight``, ``1.shortcut.0.bias``) with
    random weights and running statistics, ported to a Flax msgpack and a Keras functional
    model's weights file: each target run in its framework agrees with torch (the port's own
    check) and with the float64 reference of the canonical trees read back from it."""
    from conftest import require_backend

    from gan_backends.port import port, read_native, to_canonical

    for name in ("torch", "jax", "tensorflow"):
        require_backend(name)
    import torch

    from gan_backends.backends.torch.layers import build_network

    spec = res_spec("float32", loss=LossSpec(name="hinge"))
    torch.manual_seed(0)
    states = {}
    for net in ("generator", "discriminator"):
        seq = build_network(spec, net)
        for module in seq.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
        states[net] = seq.state_dict()
    assert "2.main.0.running_mean" in states["generator"] and "1.shortcut.0.weight" in states["discriminator"]
    source = tmp_path / "gan.pt"
    torch.save(states, source)
    z = np.random.default_rng(0).standard_normal((3, 4))
    x = np.random.default_rng(1).uniform(-1, 1, (3, *spec.data_shape))
    params, buffers = to_canonical(read_native(source), spec)
    ref = make("numpy", res_spec(loss=LossSpec(name="hinge")), params)
    ref.set_buffers(buffers)
    for to, out in (("flax", tmp_path / "gan.msgpack"), ("keras", tmp_path / "gan.weights.h5")):
        result = port(source, spec, to, out)
        assert result.passed and [a.network for a in result.agreement] == ["generator", "discriminator"], (
            result.summary()
        )
        back, back_buffers = to_canonical(read_native(out), spec)
        assert list(back) == list(params) and all(np.array_equal(back[k], params[k]) for k in params), to
        assert all(np.array_equal(back_buffers[k], buffers[k]) for k in buffers), to
    # The trees read from torch are the torch model's: its outputs through the reference.
    own = make("torch", spec, params)
    own.set_buffers(buffers)
    assert_close(own.generate(z.astype(np.float32)), ref.generate(z), 1e-5, "G")
    assert_close(own.discriminate(x.astype(np.float32)), ref.discriminate(x), 1e-5, "D")
