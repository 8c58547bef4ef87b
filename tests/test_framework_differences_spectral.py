"""Where the frameworks' own spectral normalisations differ (docs/framework-differences.md): each
test shows the framework's behaviour, then ours (the spec's: torch's ``nn.utils.spectral_norm``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends.numpy.spectral import normalised_kernel, power_iteration
from gan_backends.spec import Dense, SpectralNormSpec

SN = SpectralNormSpec(n_power_iterations=1, eps=1e-12)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / max(np.linalg.norm(x), 1e-12)


def test_torch_spectral_norm_apis_differ_in_order_start_and_keys():
    """``nn.utils.spectral_norm``: ``v = normalize(Wᵀu)`` then ``u = normalize(W v)``, u and v
    drawn at random and not iterated at registration, keys ``weight_orig/_u/_v``.
    ``nn.utils.parametrizations.spectral_norm``: ``u`` first, then ``v``; 15 iterations when it is
    applied; keys ``parametrizations.weight.original`` and ``parametrizations.weight.0._u/_v``.
    From the same W, u, v one training call leaves different vectors and σ."""
    require_backend("torch")
    import torch
    from torch import nn

    torch.manual_seed(0)
    w = torch.randn(3, 5, dtype=torch.float64)
    old = torch.nn.utils.spectral_norm(nn.Linear(5, 3).double())
    new = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(5, 3).double())
    assert set(old.state_dict()) == {"bias", "weight_orig", "weight_u", "weight_v"}
    assert set(new.state_dict()) == {
        "bias",
        "parametrizations.weight.original",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
    }
    # Registration: the parametrisation has already run its 15 iterations (u ≈ the top left
    # singular vector); the old API's u is a random unit vector.
    top = torch.linalg.svd(new.parametrizations.weight.original.detach())[0][:, 0]
    assert abs(float(torch.dot(new.parametrizations.weight[0]._u, top))) > 0.999
    sn = new.parametrizations.weight[0]
    with torch.no_grad():
        old.weight_orig.copy_(w)
        new.parametrizations.weight.original.copy_(w)
        sn._u.copy_(old.weight_u)
        sn._v.copy_(old.weight_v)
    u0, v0 = old.weight_u.numpy().copy(), old.weight_v.numpy().copy()
    x = torch.randn(2, 5, dtype=torch.float64)
    old.train()
    new.train()
    old(x), new(x)
    wn = w.numpy()
    v_old = _normalize(wn.T @ u0)
    np.testing.assert_allclose(old.weight_v.numpy(), v_old, atol=1e-15)
    np.testing.assert_allclose(old.weight_u.numpy(), _normalize(wn @ v_old), atol=1e-15)
    u_new = _normalize(wn @ v0)
    np.testing.assert_allclose(sn._u.numpy(), u_new, atol=1e-15)
    np.testing.assert_allclose(sn._v.numpy(), _normalize(wn.T @ u_new), atol=1e-15)
    assert np.abs(sn._u.numpy() - old.weight_u.numpy()).max() > 1e-3
    # Ours is the old API's order (the reference's power iteration).
    u, v = power_iteration(wn, u0, v0, SN)
    np.testing.assert_allclose(u, old.weight_u.numpy(), atol=1e-15)
    np.testing.assert_allclose(v, old.weight_v.numpy(), atol=1e-15)


def test_keras_spectral_normalization_overwrites_the_kernel():
    """Keras 3 ``SpectralNormalization``: only ``vector_u`` ``(1, out)`` is stored; a training
    call writes ``W/σ`` into the wrapped layer's ``kernel`` (so its gradient has no σ term: it is
    the plain Dense gradient); an inference call applies the kernel as stored, with no σ.
    Ours (the TF backend's SpectralNormLayer) keeps the kernel and divides on every call."""
    require_backend("tensorflow")
    import keras
    import tensorflow as tf

    from gan_backends.backends.tensorflow.layers import build_layer

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((5, 3)).astype("float32")
    u0 = rng.standard_normal((1, 3)).astype("float32")
    x = rng.standard_normal((2, 5)).astype("float32")
    theirs = keras.layers.SpectralNormalization(keras.layers.Dense(3))
    theirs.build((None, 5))
    assert sorted(w.name for w in theirs.weights) == ["bias", "kernel", "vector_u"]
    theirs.layer.kernel.assign(kernel)
    theirs.vector_u.assign(u0)
    w = kernel.T
    v = _normalize(w.T @ u0[0])
    u = _normalize(w @ v)
    sigma = u @ w @ v
    theirs(x, training=True)
    np.testing.assert_allclose(theirs.layer.kernel.numpy(), kernel / sigma, rtol=1e-5)  # overwritten
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        y = theirs(xt, training=True)
    np.testing.assert_allclose(tape.gradient(y, theirs.layer.kernel).numpy(), x.T @ np.ones((2, 3)), rtol=1e-5)
    stored = theirs.layer.kernel.numpy()
    np.testing.assert_allclose(theirs(x, training=False).numpy(), x @ stored, rtol=1e-5, atol=1e-6)

    ours = build_layer(Dense(units=3, use_bias=False, spectral_norm={}), (5,), tf.float32, "sn")
    ours.inner.kernel.assign(kernel)
    ours.sn_u.assign(u0[0])
    ours.sn_v.assign(np.zeros(5, "float32"))
    ours(xt, training=True, update_stats=True)
    np.testing.assert_array_equal(ours.inner.kernel.numpy(), kernel)  # the kernel is left alone
    np.testing.assert_allclose(ours(xt).numpy(), x @ (kernel / sigma), rtol=1e-5)  # eval: W / σ(u, v stored)


def test_flax_spectral_norm_iterates_at_inference_and_puts_eps_in_the_root():
    """Flax ``nn.SpectralNorm``: ``batch_stats`` hold ``u`` ``(1, out)`` and ``sigma``, no ``v``;
    ``update_stats=False`` still runs the power iteration from ``u`` (torch's inference uses σ =
    uᵀ W v from the stored u, v); ``_l2_normalize`` is ``x·rsqrt(Σx² + eps)``, torch's
    ``x / max(‖x‖, eps)``. Ours (the JAX backend's SpectralNormed) is torch's."""
    require_backend("jax")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax.linen.normalization import _l2_normalize

    from gan_backends.backends.jax.layers import Sequential

    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((5, 3)).astype("float32")
    u0, v0 = _normalize(rng.standard_normal(3)), _normalize(rng.standard_normal(5))
    x = rng.standard_normal((2, 5)).astype("float32")
    theirs = nn.SpectralNorm(nn.Dense(3, use_bias=False))
    variables = theirs.init(jax.random.PRNGKey(0), x, update_stats=False)
    assert jax.tree_util.tree_map(jnp.shape, variables["batch_stats"]) == {
        "layer_instance/kernel/u": (1, 3),
        "layer_instance/kernel/sigma": (),
    }
    variables = {
        "params": {"layer_instance": {"kernel": jnp.asarray(kernel)}},
        "batch_stats": {
            "layer_instance/kernel/u": jnp.asarray(u0[None], jnp.float32),
            "layer_instance/kernel/sigma": jnp.ones((), jnp.float32),
        },
    }
    y_theirs = np.asarray(theirs.apply(variables, x, update_stats=False))
    layer = Dense(units=3, use_bias=False, spectral_norm={})
    p = {"kernel": kernel.astype(float), "sn_u": u0, "sn_v": v0}
    eval_sigma = normalised_kernel(layer, p, training=False)[1].sigma
    iterated_sigma = normalised_kernel(layer, p, training=True)[1].sigma
    np.testing.assert_allclose(y_theirs, x @ kernel / iterated_sigma, rtol=1e-5)  # one more iteration
    assert abs(eval_sigma - iterated_sigma) / iterated_sigma > 1e-2
    # The eps: a norm of 1e-7 is 1e-7 to torch (eps 1e-12 is a floor) and ~1e-6 to Flax.
    tiny = jnp.asarray([1e-7], jnp.float32)
    assert float(_l2_normalize(tiny, eps=1e-12)[0]) == pytest.approx(1e-7 / np.sqrt(1e-14 + 1e-12), rel=1e-5)
    # Ours: inference applies σ = uᵀ W v from what is stored.
    ours = Sequential(layers=(layer,), dtype=jnp.float32, precision=jax.lax.Precision.HIGHEST)
    stats = {"0": {"sn_u": jnp.asarray(u0, jnp.float32), "sn_v": jnp.asarray(v0, jnp.float32)}}
    y_ours = np.asarray(ours.apply({"params": {"0": {"kernel": kernel}}, "batch_stats": stats}, x, False))
    np.testing.assert_allclose(y_ours, x @ kernel / eval_sigma, rtol=1e-5)
