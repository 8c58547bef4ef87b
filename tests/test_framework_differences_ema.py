"""The moving averages of the three frameworks (docs/framework-differences.md, "EMA" rows): each
shown as the framework computes it against its formula written by hand, then the spec's
``ema`` (every backend) shown equal to the framework's own with the matching settings."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends import get_backend
from gan_backends.backends.base import TrainBatch
from gan_backends.params import init_params
from gan_backends.presets import tiny
from gan_backends.spec import EmaSpec


def _train(name: str, rule: EmaSpec, steps: int = 4):
    """A float64 tiny GAN trained ``steps`` steps; the backend, and G's canonical parameters
    before the first step and after each."""
    spec = tiny(dtype="float64").replace(ema=rule)
    backend = get_backend(name)(spec, init_params(spec, 0))
    rng = np.random.default_rng(5)
    thetas = [{k: v for k, v in backend.get_params().items() if k.startswith("generator.")}]
    for _ in range(steps):
        batch = TrainBatch(
            real=rng.standard_normal((1, 8, 12)), z_d=rng.standard_normal((1, 8, 8)), z_g=rng.standard_normal((8, 8))
        )
        backend.train_step(batch)
        thetas.append({k: v for k, v in backend.get_params().items() if k.startswith("generator.")})
    return backend, thetas


def test_optax_ema_debiases_by_default_from_zeros():
    require_backend("jax")
    import jax
    import jax.numpy as jnp
    import optax

    assert inspect.signature(optax.ema).parameters["debias"].default is True
    jax.config.update("jax_enable_x64", True)
    xs = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 4.0])]
    for debias in (True, False):
        tx = optax.ema(0.9, debias=debias)
        state = tx.init(jnp.zeros(2, jnp.float64))
        assert int(state.count) == 0 and state.count.dtype == jnp.int32 and not np.any(state.ema)
        m = np.zeros(2)
        for k, x in enumerate(xs, start=1):
            out, state = tx.update(jnp.asarray(x), state)
            m = 0.9 * m + 0.1 * x  # the accumulator, from zeros
            want = m / (1 - 0.9**k) if debias else m  # count k from 1, after its increment
            np.testing.assert_allclose(np.asarray(out), want, rtol=1e-15)
            assert int(state.count) == k
    # Without debias the first output is 0.1·x: optax's average starts at 0, not at the weights.
    # Ours: the spec's debias true (from start_step 0) is optax.ema(debias=True) over θ₁, θ₂, ...
    backend, thetas = _train("jax", EmaSpec(decay=0.9, start_step=0, debias=True))
    tx = optax.ema(0.9, debias=True)
    state = tx.init({k: jnp.asarray(v) for k, v in thetas[0].items()})
    for theta in thetas[1:]:
        out, state = tx.update({k: jnp.asarray(v) for k, v in theta.items()}, state)
    for name, value in backend.get_ema().params.items():
        np.testing.assert_allclose(value, np.asarray(out[name]), rtol=0, atol=1e-14, err_msg=name)


def test_tf_exponential_moving_average_ramps_with_num_updates():
    require_backend("tensorflow")
    import tensorflow as tf

    params = inspect.signature(tf.train.ExponentialMovingAverage).parameters
    assert params["num_updates"].default is None and params["zero_debias"].default is False
    for num_updates in (None, 3):
        v = tf.Variable(np.array([1.0, -1.0]))
        ema = tf.train.ExponentialMovingAverage(0.99, num_updates=num_updates)
        ema.apply([v])  # creates the shadow as a copy of v (the update from v to v is a no-op)
        shadow = v.numpy().copy()
        v.assign([3.0, 2.0])
        ema.apply([v])
        # The decay is a float32 tensor even for float64 variables (convert_to_tensor(float32)),
        # and so is the ramp (1 + n)/(10 + n).
        decay = np.float32(0.99)
        if num_updates is not None:
            decay = min(decay, np.float32(1 + num_updates) / np.float32(10 + num_updates))
        shadow = shadow - (shadow - v.numpy()) * np.float64(np.float32(1) - decay)  # 1 - decay in float32 too
        np.testing.assert_allclose(ema.average(v).numpy(), shadow, rtol=1e-15)
    assert decay == pytest.approx(4 / 13)  # num_updates 3: the decay is 0.31, not 0.99
    with pytest.raises(ValueError, match="float32"):  # a float64 decay is refused
        tf.train.ExponentialMovingAverage(tf.constant(0.99, tf.float64)).apply([tf.Variable([1.0], dtype=tf.float64)])
    # Ours: debias false from start_step 0 is the shadow without num_updates, started at θ₀.
    backend, thetas = _train("tensorflow", EmaSpec(decay=0.9, start_step=0, debias=False))
    tf_vars = {k: tf.Variable(v) for k, v in thetas[0].items()}
    ema = tf.train.ExponentialMovingAverage(0.9)
    ema.apply(list(tf_vars.values()))
    for theta in thetas[1:]:
        for k, var in tf_vars.items():
            var.assign(theta[k])
        ema.apply(list(tf_vars.values()))
    # Ours lerps by exactly 1 - 0.9 in float64 (the spec's decay; the reference's 1e-14 away is
    # test_backend_average_matches_the_reference); TF's by 1 - fl32(0.9): 1e-9 apart, no closer.
    for name, value in backend.get_ema().params.items():
        gap = np.abs(value - ema.average(tf_vars[name]).numpy()).max()
        assert 1e-12 < gap < 1e-7, (name, gap)


def test_torch_averaged_model_copies_at_its_first_update():
    require_backend("torch")
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from gan_backends.backends.torch.layers import canonical_parameters, canonical_tree

    assert inspect.signature(AveragedModel).parameters["use_buffers"].default is False
    net = torch.nn.Linear(1, 1, bias=False).double()
    avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    hand = None
    for value in (2.0, 5.0, -1.0):
        with torch.no_grad():
            net.weight.fill_(value)
        avg.update_parameters(net)
        hand = value if hand is None else hand + 0.1 * (value - hand)  # first update copies
        assert float(avg.module.weight) == pytest.approx(hand, rel=1e-15)
    assert int(avg.n_averaged) == 3  # no debias; the weights at construction are never averaged
    # Ours: start_step 1 (copy at G update 1, then the lerp) is AveragedModel + get_ema_multi_avg_fn.
    spec_rule = EmaSpec(decay=0.9, start_step=1, debias=False)
    spec = tiny(dtype="float64").replace(ema=spec_rule)
    backend = get_backend("torch")(spec, init_params(spec, 0))
    averaged = AveragedModel(backend.G, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    rng = np.random.default_rng(5)
    for _ in range(4):
        batch = TrainBatch(
            real=rng.standard_normal((1, 8, 12)), z_d=rng.standard_normal((1, 8, 8)), z_g=rng.standard_normal((8, 8))
        )
        backend.train_step(batch)
        averaged.update_parameters(backend.G)
    theirs = canonical_tree(canonical_parameters(spec, "generator", averaged.module))
    for name, value in backend.get_ema().params.items():
        np.testing.assert_allclose(value, theirs[name], rtol=0, atol=1e-14, err_msg=name)
