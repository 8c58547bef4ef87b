"""Training contracts of every framework backend against independent float64 NumPy
(tests/numeric.py): BatchNorm's running statistics in the documented order of calls, gradient
penalties with their second-order weight gradients against central differences, the torch-form
optimisers, weight clipping, and the optimiser state as it moves between backends. Written once,
run in each framework; the same scenarios in a framework's other modes are in test_conv_quirks.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import (
    ADAM,
    PENALTY_CASES,
    BatchNormCase,
    assert_close,
    check_penalty,
    check_running_statistics,
    draw,
    make,
    penalty_spec,
    randomised,
)
from numeric import optimizer_update

from gan_backends.backends import TrainBatch
from gan_backends.params import init_params
from gan_backends.presets import get_preset
from gan_backends.spec import (
    BatchNorm,
    Conv2D,
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


@pytest.mark.parametrize("case", ["conv", "first"])
def test_running_statistics_follow_the_documented_calls(framework, case):
    check_running_statistics(framework, BatchNormCase(case), every_call=case == "conv")


@pytest.mark.parametrize(("loss", "penalty", "weight"), PENALTY_CASES, ids=[c[1] for c in PENALTY_CASES])
def test_penalty_value_and_second_order_gradients(framework, loss, penalty, weight):
    check_penalty(framework, loss, penalty, weight)


def test_wgan_gp_needs_alpha(framework):
    spec = penalty_spec("wasserstein", "wgan_gp", 10.0)
    backend = make(framework, spec, init_params(spec, 0))
    with pytest.raises(ValueError, match="alpha"):
        backend.loss_terms(np.zeros((2, 4, 4, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="alpha"):
        backend.train_step(TrainBatch(real=np.zeros((1, 2, 4, 4, 2)), z_d=np.zeros((1, 2, 3)), z_g=np.zeros((2, 3))))


# -- optimisers and clipping ----------------------------------------------------------------------

OPT_CASES = {
    "sgd-nesterov/rmsprop-centered": (
        SGDSpec(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        RMSpropSpec(lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01),
        LossSpec(name="least_squares"),
    ),
    "rmsprop/sgd-plain/clip": (
        RMSpropSpec(lr=1e-3, alpha=0.95, eps=1e-7),
        SGDSpec(lr=0.2),
        LossSpec(name="wasserstein", clip_value=0.3),
    ),
    "adam/rmsprop-momentum/hinge-clip": (
        ADAM,
        # eps 1e-4, and not wasserstein: RMSprop divides a gradient by its own running size,
        # so a gradient that is rounding noise (wasserstein's last bias: -1 + 1; a unit whose
        # gradient nearly vanishes) is amplified up to 1/eps and the trajectory compares noise.
        RMSpropSpec(lr=1e-2, alpha=0.99, eps=1e-4, momentum=0.9),
        LossSpec(name="hinge", clip_value=0.3),
    ),
    "sgd-momentum/sgd-momentum": (SGDSpec(lr=0.05, momentum=0.5), SGDSpec(lr=0.1, momentum=0.8), LossSpec()),
}


def tiny_batch(rng, n_critic: int = 1) -> TrainBatch:
    return TrainBatch(
        real=rng.uniform(-1, 1, (n_critic, 6, 12)),
        z_d=rng.standard_normal((n_critic, 6, 8)),
        z_g=rng.standard_normal((6, 8)),
    )


@pytest.mark.parametrize("case", list(OPT_CASES))
def test_optimizers_and_clipping_against_numpy(framework, case):
    """Each step: the gradients at the current parameters (from a second backend used as a
    gradient oracle, held against finite differences elsewhere) fed to the NumPy optimisers must
    give what train_step gives; the exported slots must be the NumPy buffers, and loaded into a
    fresh backend they continue the trajectory."""
    g_opt, d_opt, loss = OPT_CASES[case]
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=g_opt, d_optimizer=d_opt, loss=loss)
    params = init_params(spec, 7)
    rng = np.random.default_rng(7)
    batches = [tiny_batch(rng) for _ in range(4)]
    backend, oracle = make(framework, spec, params), make(framework, spec, params)
    want = {k: v.copy() for k, v in params.items()}
    opts = {"generator": g_opt, "discriminator": d_opt}
    slots: dict[str, dict] = {name: {} for name in want}
    for t, batch in enumerate(batches[:3], start=1):
        backend.train_step(batch)
        # D: gradient at the current parameters (fake = G(z_d)), update, clip; G: through the new D.
        for net, z in (("discriminator", batch.z_d[0]), ("generator", batch.z_g)):
            oracle.set_params(want)
            _, grads = oracle.gradients(batch.real[0], z)
            for name in [n for n in want if n.startswith(net)]:
                want[name] = optimizer_update(opts[net], want[name], grads[name], slots[name], t)
                if net == "discriminator" and loss.clip_value is not None:
                    want[name] = np.clip(want[name], -loss.clip_value, loss.clip_value)
    got = backend.get_params()
    for name in want:
        assert_close(got[name], want[name], 1e-12, name)
    if loss.clip_value is not None:
        d_values = np.concatenate([v.ravel() for k, v in got.items() if k.startswith("discriminator")])
        assert np.max(np.abs(d_values)) == loss.clip_value  # clipping was active, and exact

    state = backend.get_optimizer_state()
    assert state.steps == {"generator": 3, "discriminator": 3}
    expected: dict[str, dict] = {}
    for name, tree in slots.items():
        for slot, value in tree.items():
            expected.setdefault(slot, {})[name] = value
    assert set(state.slots) == set(expected)
    for slot, tree in expected.items():
        assert list(state.slots[slot]) == [n for n in params if n in tree], slot
        for name, value in tree.items():
            assert_close(state.slots[slot][name], value, 1e-12, (slot, name))

    fresh = make(framework, spec, params)
    fresh.set_params(got)
    fresh.set_optimizer_state(state)
    backend.train_step(batches[3])
    fresh.train_step(batches[3])
    after, again = fresh.get_params(), backend.get_params()
    for name in again:
        np.testing.assert_array_equal(after[name], again[name], err_msg=name)
    assert fresh.get_optimizer_state().steps == {"generator": 4, "discriminator": 4}


def test_optimizer_state_is_zero_before_the_first_step(framework):
    g_opt, d_opt, loss = OPT_CASES["sgd-nesterov/rmsprop-centered"]
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=g_opt, d_optimizer=d_opt, loss=loss)
    state = make(framework, spec, init_params(spec, 0)).get_optimizer_state()
    assert state.steps == {"generator": 0, "discriminator": 0}
    assert set(state.slots) == {"momentum", "v", "grad_avg"}
    assert {n.split(".")[0] for n in state.slots["v"]} == {"discriminator"}
    assert {n.split(".")[0] for n in state.slots["momentum"]} == {"generator", "discriminator"}
    assert all(not v.any() for tree in state.slots.values() for v in tree.values())


D_RMSPROP = RMSpropSpec(lr=1e-2, alpha=0.9, momentum=0.5, centered=True)
G_SGD = SGDSpec(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)


def clip_spec() -> GANSpec:
    """WGAN with clipping and two critic updates per step, a BatchNorm in the critic (its scale
    starts near 1: clipped too), RMSprop for D and SGD for G."""
    return GANSpec(
        name="clip",
        data_shape=(4, 4, 1),
        latent_dim=3,
        generator=(Dense(units=16), Tanh(), Reshape(shape=(4, 4, 1))),
        discriminator=(
            Conv2D(filters=2, kernel=3, stride=2, padding=1, use_bias=False),
            BatchNorm(),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ),
        loss=LossSpec(name="wasserstein", clip_value=0.05),
        g_optimizer=G_SGD,
        d_optimizer=D_RMSPROP,
        n_critic=2,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.3),
    )


def test_weights_are_clipped_after_each_d_update(framework):
    """One step: twice D = clip(RMSprop(D, ∇D)), then G = SGD(G, ∇G at the clipped D); the
    gradients from a second backend's ``gradients`` (held against finite differences elsewhere)."""
    spec = clip_spec()
    rng = np.random.default_rng(6)
    params = {k: v * 0.06 if k.startswith("discriminator") else v for k, v in randomised(spec, rng).items()}
    batch = draw(rng, spec, batch=4)
    backend, oracle = make(framework, spec, params), make(framework, spec, params)
    slots: dict[str, dict] = {name: {} for name in params}
    want = dict(params)
    for i in range(spec.n_critic):
        oracle.set_params(want)
        _, grads = oracle.gradients(batch.real[i], batch.z_d[i])
        d_names = [n for n in want if n.startswith("discriminator")]
        if i == 0:  # clipping bites
            assert any(np.abs(optimizer_update(D_RMSPROP, want[n], grads[n], {}, 1)).max() > 0.05 for n in d_names)
        for name in d_names:
            want[name] = np.clip(optimizer_update(D_RMSPROP, want[name], grads[name], slots[name], i + 1), -0.05, 0.05)
    oracle.set_params(want)
    _, grads = oracle.gradients(batch.real[0], batch.z_g)
    for name in [n for n in want if n.startswith("generator")]:
        want[name] = optimizer_update(G_SGD, want[name], grads[name], slots[name], 1)
    backend.train_step(batch)
    got = backend.get_params()
    for name in params:
        assert_close(got[name], want[name], 1e-12, name)
    clipped = np.concatenate([np.abs(v).ravel() for k, v in got.items() if k.startswith("discriminator")])
    assert clipped.max() <= 0.05 and np.sum(clipped == 0.05) > 3
    state = backend.get_optimizer_state()
    assert state.steps == {"generator": 1, "discriminator": 2}
    for name, tree in slots.items():
        for slot, value in tree.items():
            assert_close(state.slots[slot][name], value, 1e-12, (slot, name))


def test_optimizer_state_and_buffers_continue_a_trajectory(framework):
    spec = clip_spec()
    rng = np.random.default_rng(7)
    params = init_params(spec, 7)
    batches = [draw(rng, spec, batch=4) for _ in range(3)]
    a = make(framework, spec, params)
    for batch in batches[:2]:
        a.train_step(batch)
    state = a.get_optimizer_state()
    d_names = {n for n in params if n.startswith("discriminator")}
    assert set(state.slots) == {"v", "grad_avg", "momentum"}  # SGD: momentum; RMSprop: all three
    assert set(state.slots["v"]) == set(state.slots["grad_avg"]) == d_names
    assert set(state.slots["momentum"]) == set(params)
    b = make(framework, spec, a.get_params())
    b.set_buffers(a.get_buffers())
    b.set_optimizer_state(state)
    assert b.get_optimizer_state().steps == {"generator": 2, "discriminator": 4}
    a.train_step(batches[2])
    b.train_step(batches[2])
    for name, value in a.get_params().items():
        np.testing.assert_array_equal(b.get_params()[name], value, err_msg=name)
    # set_params resets the optimisers, not the running statistics.
    buffers = b.get_buffers()
    b.set_params(params)
    assert b.get_optimizer_state().steps == {"generator": 0, "discriminator": 0}
    assert all(not v.any() for tree in b.get_optimizer_state().slots.values() for v in tree.values())
    for name, value in b.get_buffers().items():
        np.testing.assert_array_equal(value, buffers[name])
