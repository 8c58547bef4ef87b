"""The resampling and pooling rows of docs/framework-differences.md: each difference shown in the
frameworks themselves (if a framework changes, the test fails and the catalog needs updating),
then what the backends do about it (their agreement with the reference: test_resample_backends.py)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from conftest import require_backend
from harness import ADAM, make, randomised

from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.spec import AvgPool2D, Dense, GANSpec, GlobalSumPool, Numerics, Reshape, SpecError, Upsample


@pytest.fixture
def all_three():
    for name in ("torch", "tensorflow", "jax"):
        require_backend(name)


def spec_of(layer, shape, dtype: str) -> GANSpec:
    """D: ``layer`` -> GlobalSumPool -> Dense(1), G: Dense -> Reshape."""
    return GANSpec(
        name="difference",
        data_shape=shape,
        latent_dim=2,
        generator=(Dense(units=math.prod(shape)), Reshape(shape=shape)),
        discriminator=(layer, GlobalSumPool(), Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
    )


def test_upsampling_default_methods_differ(all_three):
    import jax
    import keras
    import torch

    assert torch.nn.Upsample(scale_factor=2).mode == "nearest"
    assert keras.layers.UpSampling2D().interpolation == "nearest"
    with pytest.raises(TypeError):
        jax.image.resize(np.zeros((1, 2, 2, 1)), (1, 4, 4, 1))  # no default method
    # Ours: the method is required.
    with pytest.raises(TypeError, match="method"):
        Upsample(factor=2)  # type: ignore[call-arg]


def test_align_corners_is_a_torch_flag_that_tf2_and_jax_lack(all_three, rng):
    import jax
    import tensorflow as tf
    import torch

    x = torch.from_numpy(rng.standard_normal((1, 1, 3, 3)))
    half = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")  # align_corners default False
    aligned = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    assert torch.equal(half, torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    assert (half - aligned).abs().max() > 0.1
    assert "align_corners" not in inspect.signature(tf.image.resize).parameters
    assert "align_corners" in inspect.signature(tf.compat.v1.image.resize).parameters
    assert "align_corners" not in inspect.signature(jax.image.resize).parameters
    # jax's scale_and_translate can say it: scale (n·k - 1)/(n - 1), translation (1 - scale)/2.
    s = 5 / 2
    y = jax.image.scale_and_translate(
        x.permute(0, 2, 3, 1).numpy(), (1, 6, 6, 1), (1, 2), np.array([s, s]), np.array([(1 - s) / 2] * 2), "linear"
    )
    np.testing.assert_allclose(np.asarray(y)[..., 0], aligned[:, 0].numpy(), rtol=1e-6, atol=1e-6)


def test_jax_resize_antialiases_by_default_which_matters_only_downsampling(all_three, rng):
    import jax
    import torch

    x = rng.standard_normal((1, 8, 8, 1))
    assert inspect.signature(jax.image.resize).parameters["antialias"].default is True
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for size in (4, 16):
        want = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear").permute(0, 2, 3, 1).numpy()
        default = np.asarray(jax.image.resize(x, (1, size, size, 1), "bilinear"))
        plain = np.asarray(jax.image.resize(x, (1, size, size, 1), "bilinear", antialias=False))
        np.testing.assert_allclose(plain, want, rtol=1e-6, atol=1e-6)
        if size > 8:  # upsampling: the same
            np.testing.assert_allclose(default, want, rtol=1e-6, atol=1e-6)
        else:  # downsampling: a wider (antialiasing) kernel, another image
            assert np.abs(default - want).max() > 0.1


def test_tf_bilinear_resize_computes_in_float32(all_three, rng):
    """``tf.image.resize`` returns float32 for a float64 image, and Keras' ``UpSampling2D`` (built
    on it) returns the layer's float64 dtype with float32 values: 1e-7 off, where float64 means 1e-16."""
    import keras
    import tensorflow as tf
    import torch

    x = rng.standard_normal((2, 3, 4, 2))
    exact = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=2, mode="bilinear")
    exact = exact.permute(0, 2, 3, 1).numpy()
    resized = tf.image.resize(x, (6, 8), method="bilinear")
    assert resized.dtype == tf.float32
    keras_up = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float64")(x)
    assert keras_up.dtype == "float64"
    assert np.abs(np.asarray(keras_up) - exact).max() > 1e-9
    assert np.abs(tf.image.resize(x, (6, 8), method="nearest").numpy() - x.repeat(2, 1).repeat(2, 2)).max() == 0
    # Ours, float64 in TensorFlow: the spec's separable gathers, the float64 reference's values.
    layer = Upsample(factor=2, method="bilinear")
    spec = spec_of(layer, (3, 4, 2), "float64")
    params = randomised(spec, rng)
    got = make("tensorflow", spec, params).activations("discriminator", x)[0]
    assert np.abs(got - exact).max() < 1e-14
    assert np.abs(got - NumpyReference(spec, params).activations("discriminator", x)[0]).max() < 1e-14


def test_count_include_pad_defaults_differ(all_three, rng):
    import flax.linen as fnn
    import keras
    import tensorflow as tf
    import torch

    x = rng.uniform(1, 2, (1, 5, 5, 1))
    corner = x[0, :2, :2, 0].sum()
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    assert inspect.signature(torch.nn.AvgPool2d).parameters["count_include_pad"].default is True
    assert torch.nn.functional.avg_pool2d(t, 3, 1, padding=1)[0, 0, 0, 0].item() == pytest.approx(corner / 9)
    assert inspect.signature(fnn.avg_pool).parameters["count_include_pad"].default is True
    assert float(fnn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))[0, 0, 0, 0]) == pytest.approx(corner / 9)
    keras_same = keras.layers.AveragePooling2D(3, 1, padding="same", dtype="float64")(x)
    assert float(keras_same[0, 0, 0, 0]) == pytest.approx(corner / 4)  # only the 4 real pixels
    assert float(tf.nn.avg_pool2d(x, 3, 1, "SAME")[0, 0, 0, 0]) == pytest.approx(corner / 4)
    # Ours: a padded AvgPool2D says which it means.
    with pytest.raises(SpecError, match="count_include_pad"):
        AvgPool2D(pool=3, stride=1, padding=1)
    for include, want in ((True, corner / 9), (False, corner / 4)):
        spec = spec_of(AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=include), (5, 5, 1), "float64")
        params = randomised(spec, rng)
        for framework in ("torch", "tensorflow", "jax"):
            got = make(framework, spec, params).activations("discriminator", x)[0]
            assert got[0, 0, 0, 0] == pytest.approx(want, rel=1e-14), (framework, include)


def test_torch_pooling_cannot_pad_like_tf_same(all_three, rng):
    """torch refuses a padding over half the window, and its ``padding=`` is symmetric while TF
    'same' with stride 2 on an even input pads one row at the bottom only."""
    import torch

    with pytest.raises(RuntimeError, match="pad should be at most half"):
        torch.nn.functional.avg_pool2d(torch.zeros(1, 1, 5, 5), 2, 2, padding=2)
    layer = AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False)
    assert layer.pads((6, 6, 1)) == ((0, 1), (0, 1))
    x = rng.standard_normal((2, 6, 6, 1))
    spec = spec_of(layer, (6, 6, 1), "float64")
    params = randomised(spec, rng)
    want = NumpyReference(spec, params).activations("discriminator", x)[0]
    assert np.abs(make("torch", spec, params).activations("discriminator", x)[0] - want).max() < 1e-15


def test_flax_avg_pool_without_counting_pads_promotes_float32_under_x64(all_three, rng):
    import flax.linen as fnn
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # as every float64 run of the JAX backend leaves it
    x = jnp.asarray(rng.standard_normal((1, 4, 4, 1)), jnp.float32)
    assert fnn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=True).dtype == jnp.float32
    assert fnn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False).dtype == jnp.float64
    # Ours: cast back to the input's dtype.
    spec = spec_of(AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False), (4, 4, 1), "float32")
    got = make("jax", spec, randomised(spec, rng)).activations("discriminator", np.asarray(x))
    assert all(a.dtype == np.float32 for a in got)
