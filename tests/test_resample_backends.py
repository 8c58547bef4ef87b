"""Upsample, AvgPool2D and GlobalSumPool in every framework backend: against the float64 reference
(forward and both networks' gradients, which run the layers' backward; float64 to 1e-12, float32
to its rounding), a gradient penalty through them (second order), each framework's own op
(``nn.Upsample``, ``F.avg_pool2d``, ``tf.image.resize``, ``keras.layers.AveragePooling2D``,
``jax.image.resize``, ``flax.linen.avg_pool``), and the port's native Keras and Flax models.

Each layer sits first in D (its input is the data, chosen here): ``activations('discriminator',
x)[0]`` is its output, and G's gradient reaches G's Dense only through the layer's backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend
from harness import ADAM, assert_close, make, randomised
from numeric import rel_max_abs
from test_resample import resnet_like_spec

from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.params import init_params
from gan_backends.spec import AvgPool2D, Dense, Flatten, GANSpec, GlobalSumPool, Numerics, Reshape, Upsample


def d_spec(layer, shape, dtype: str = "float64") -> GANSpec:
    """G: Dense -> Reshape(shape); D: ``layer`` -> [Flatten] -> Dense(1)."""
    head = (Flatten(), Dense(units=1)) if len(layer.output_shape(shape)) == 3 else (Dense(units=1),)
    return GANSpec(
        name="one-resample-layer",
        data_shape=shape,
        latent_dim=3,
        generator=(Dense(units=math.prod(shape)), Reshape(shape=shape)),
        discriminator=(layer, *head),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
    )


# The penalty test below runs every layer's backward again (GlobalSumPool, nearest, padded pools in D,
# bilinear in G): these are the forms it does not.
CASES = [
    (Upsample(factor=2, method="nearest"), (3, 4, 2)),
    (Upsample(factor=2, method="bilinear"), (3, 4, 2)),
    (Upsample(factor=3, method="bilinear", align_corners=True), (2, 3, 1)),
    (Upsample(factor=2, method="bilinear", align_corners=True), (1, 3, 2)),
    (AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False), (6, 7, 2)),
    (AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False), (4, 5, 2)),
    (AvgPool2D(pool=4, stride=2, padding=3, count_include_pad=True), (5, 5, 1)),  # torch refuses padding > pool/2
]


def ids(value) -> str | None:
    return value.describe() if hasattr(value, "describe") else None


@pytest.mark.parametrize(("layer", "shape"), CASES, ids=ids)
def test_layer_and_its_backward_match_the_reference(framework, layer, shape, rng):
    spec = d_spec(layer, shape)
    params = randomised(spec, rng)
    x, z = rng.standard_normal((2, *shape)), rng.standard_normal((2, 3))
    ref = NumpyReference(spec, params)
    backend = make(framework, spec, params)
    want = ref.activations("discriminator", x)[0]
    y = backend.activations("discriminator", x)[0]
    assert y.shape == want.shape == (2, *layer.output_shape(shape))
    assert_close(y, want, 1e-12)
    want_terms, want_grads = ref.gradients(x, z)
    terms, grads = backend.gradients(x, z)
    assert terms == pytest.approx(want_terms, rel=1e-12)
    for name, grad in want_grads.items():
        assert_close(grads[name], grad, 1e-11, name)


def test_float32_within_rounding_of_the_reference(framework, rng):
    """One float32 chain of the four float forms (the dtype must survive each of them)."""
    layers = (
        Upsample(factor=2, method="bilinear"),
        AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False),
        Upsample(factor=3, method="bilinear", align_corners=True),
        GlobalSumPool(),
        Dense(units=1),
    )
    spec = d_spec(layers[0], (3, 4, 2), "float32").replace(discriminator=layers)
    params = randomised(spec, rng)
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    got = make(framework, spec, params).activations("discriminator", x)
    want = NumpyReference(spec, params).activations("discriminator", x)
    for layer, y, w in zip(layers, got, want):
        assert y.dtype == np.float32, layer
        assert_close(y, w, 2e-6, layer)


@pytest.mark.parametrize("penalty", ["wgan_gp"])  # r1 through them: the reference's test (test_resample.py)
def test_penalty_through_the_layers_matches_the_reference(framework, penalty, rng):
    """D: padded AvgPools (both count_include_pad), nearest Upsample, GlobalSumPool; G: bilinear
    Upsample. The penalty's weight gradients are second order through every one of them."""
    spec = resnet_like_spec(penalty)
    params = init_params(spec, 4)
    real, z = rng.uniform(-1, 1, (3, *spec.data_shape)), rng.standard_normal((3, 3))
    alpha = rng.uniform(0, 1, 3) if penalty == "wgan_gp" else None
    want_terms, want_grads = NumpyReference(spec, params).gradients(real, z, alpha)
    assert want_terms["d_penalty"] > 1e-3
    terms, grads = make(framework, spec, params).gradients(real, z, alpha)
    assert terms == pytest.approx(want_terms, rel=1e-11)
    for name, grad in want_grads.items():
        assert_close(grads[name], grad, 1e-10, name)


# -- each framework's own op -------------------------------------------------------------------------


def backend_output(framework: str, layer, x: np.ndarray, rng) -> np.ndarray:
    spec = d_spec(layer, x.shape[1:], str(x.dtype))
    return make(framework, spec, randomised(spec, rng)).activations("discriminator", x)[0]


def test_torch_own_ops(rng):
    require_backend("torch")
    import torch
    import torch.nn.functional as F

    x = rng.standard_normal((2, 3, 4, 2))
    t = torch.from_numpy(x).permute(0, 3, 1, 2)  # NCHW

    def own(y: torch.Tensor) -> np.ndarray:
        return y.permute(0, 2, 3, 1).numpy()

    for mode, corners in (("nearest", None), ("bilinear", False), ("bilinear", True)):
        layer = Upsample(factor=2, method=mode, align_corners=bool(corners))
        want = own(torch.nn.Upsample(scale_factor=2, mode=mode, align_corners=corners)(t))
        assert_close(backend_output("torch", layer, x, rng), want, 1e-15, layer)
    for include in (True, False):
        layer = AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=include)
        want = own(F.avg_pool2d(t, 3, 1, padding=1, count_include_pad=include))
        assert_close(backend_output("torch", layer, x, rng), want, 1e-15, layer)
    assert_close(backend_output("torch", GlobalSumPool(), x, rng), torch.sum(t, dim=(2, 3)).numpy(), 1e-15)


def test_tensorflow_own_ops(rng):
    require_backend("tensorflow")
    import keras
    import tensorflow as tf

    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    for method in ("nearest", "bilinear"):
        want = tf.image.resize(x, (6, 8), method=method).numpy()
        assert_close(backend_output("tensorflow", Upsample(factor=2, method=method), x, rng), want, 1e-6, method)
    want = tf.compat.v1.image.resize(x, (6, 8), method="bilinear", align_corners=True).numpy()
    layer = Upsample(factor=2, method="bilinear", align_corners=True)
    assert_close(backend_output("tensorflow", layer, x, rng), want, 1e-6)
    x64 = rng.standard_normal((2, 6, 7, 2))
    want = keras.layers.AveragePooling2D(3, 2, padding="same", dtype="float64")(x64).numpy()
    layer = AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False)
    assert_close(backend_output("tensorflow", layer, x64, rng), want, 1e-15)
    assert_close(backend_output("tensorflow", GlobalSumPool(), x64, rng), tf.reduce_sum(x64, [1, 2]).numpy(), 1e-15)


def test_jax_own_ops(rng):
    require_backend("jax")
    import flax.linen as fnn
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = rng.standard_normal((2, 3, 4, 2))
    for method in ("nearest", "bilinear"):
        want = np.asarray(jax.image.resize(jnp.asarray(x), (2, 6, 8, 2), method=method))
        assert_close(backend_output("jax", Upsample(factor=2, method=method), x, rng), want, 1e-15, method)
    for include in (True, False):
        layer = AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=include)
        pads = ((1, 1), (1, 1))
        want = np.asarray(fnn.avg_pool(jnp.asarray(x), (3, 3), (1, 1), pads, count_include_pad=include))
        assert_close(backend_output("jax", layer, x, rng), want, 1e-15, layer)


def test_the_references_bilinear_is_torchs_with_both_corner_conventions(rng):
    """The reference (no framework) against torch's own op on an odd factor and a one-row image."""
    require_backend("torch")
    import torch

    for shape, k in (((3, 4, 2), 3), ((1, 3, 2), 2), ((2, 2, 1), 5)):
        x = rng.standard_normal((2, *shape))
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        for corners in (False, True):
            layer = Upsample(factor=k, method="bilinear", align_corners=corners)
            spec = d_spec(layer, shape)
            got = NumpyReference(spec, init_params(spec, 0)).activations("discriminator", x)[0]
            up = torch.nn.Upsample(scale_factor=k, mode="bilinear", align_corners=corners)
            assert_close(got, up(t).permute(0, 2, 3, 1).numpy(), 1e-14, (shape, k, corners))


# -- the port's native models ----------------------------------------------------------------------


def native_spec(dtype: str) -> GANSpec:
    """Every Keras-expressible form: 'same' not counted, int padding counted, bilinear, the sum head."""
    return GANSpec(
        name="native-resample",
        data_shape=(6, 7, 2),
        latent_dim=3,
        generator=(Dense(units=84), Reshape(shape=(6, 7, 2))),
        discriminator=(
            AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False),
            Upsample(factor=2, method="bilinear"),
            AvgPool2D(pool=3, stride=2, padding=1, count_include_pad=True),
            Upsample(factor=2, method="nearest"),
            AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False),  # = Keras 'same' here
            GlobalSumPool(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
    )


def test_keras_native_model_matches_the_reference(rng):
    require_backend("tensorflow")
    from gan_backends.backends.tensorflow.checkpoint import keras_model

    spec = native_spec("float32")
    params = randomised(spec, rng)
    x = rng.standard_normal((2, *spec.data_shape)).astype(np.float32)
    _, nets = keras_model(spec, ("discriminator",), params)
    got = np.asarray(nets["discriminator"](x, training=False))
    want = NumpyReference(spec, params).discriminate(x)
    assert rel_max_abs(got, want) < 2e-6


def test_flax_native_model_matches_the_reference(rng):
    require_backend("jax")
    import jax

    from gan_backends.backends.jax.checkpoint import flax_module, flax_variables

    jax.config.update("jax_enable_x64", True)
    spec = native_spec("float64")
    params = randomised(spec, rng)
    x = rng.standard_normal((2, *spec.data_shape))
    variables = flax_variables(params, {}, spec)["discriminator"]
    got = np.asarray(flax_module(spec, "discriminator").apply(variables, x))
    assert_close(got, NumpyReference(spec, params).discriminate(x), 1e-12)
