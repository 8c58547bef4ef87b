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


# -- the port's native models and SAGAN's public module --------------------------------------------


def native_spec() -> GANSpec:
    return attention_spec().replace(
        discriminator=(SelfAttention(key_channels=2, value_channels=2), Flatten(), Dense(units=1))
    )


def test_native_keras_and_flax_models_match_the_reference(rng):
    """The port's Keras model (a custom layer, weights by ``set_weights`` in the spec's order) and
    Flax module (canonical names under ``SelfAttentionModule_0``) run D as the reference does."""
    spec = native_spec()
    params = randomised(spec, rng)
    x = rng.uniform(-1, 1, (2, 4, 4, 3))
    want = NumpyReference(spec, params).discriminate(x)
    d = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("discriminator.")}
    require_backend("tensorflow")
    from gan_backends.backends.tensorflow.checkpoint import keras_model

    model, _ = keras_model(spec, ["discriminator"], params, {})
    assert_close(np.asarray(model(x, training=False)), want, 1e-12, "keras")
    require_backend("jax")
    import jax

    from gan_backends.backends.jax.checkpoint import flax_module

    jax.config.update("jax_enable_x64", True)
    attn = {k.split(".", 1)[1]: v for k, v in d.items() if k.startswith("0.")}
    variables = {"params": {"SelfAttentionModule_0": attn, "Dense_0": {"kernel": d["2.kernel"], "bias": d["2.bias"]}}}
    assert_close(np.asarray(flax_module(spec, "discriminator").apply(variables, x)), want, 1e-12, "flax")


def test_a_sagan_self_attn_state_dict_runs_in_jax_with_its_outputs(rng):
    """heykeetae/Self-Attention-GAN's ``Self_Attn`` as written there (query_conv/key_conv/value_conv,
    ``gamma = nn.Parameter(torch.zeros(1))``): its state_dict, renamed ``<part>_conv.weight`` ->
    ``<part>_kernel`` and put in canonical layout by the torch layout rule, gives the JAX backend's
    SelfAttention the module's own outputs."""
    require_backend("torch")
    require_backend("jax")
    import torch
    from torch import nn

    from gan_backends.backends.torch.layers import from_torch_layout

    class Self_Attn(nn.Module):  # noqa: N801 - the public code's name
        def __init__(self, in_dim: int):
            super().__init__()
            self.query_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
            self.key_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
            self.value_conv = nn.Conv2d(in_dim, in_dim, 1)
            self.gamma = nn.Parameter(torch.zeros(1))
            self.softmax = nn.Softmax(dim=-1)

        def forward(self, x):
            b, c, width, height = x.size()
            proj_query = self.query_conv(x).view(b, -1, width * height).permute(0, 2, 1)
            proj_key = self.key_conv(x).view(b, -1, width * height)
            attention = self.softmax(torch.bmm(proj_query, proj_key))
            proj_value = self.value_conv(x).view(b, -1, width * height)
            out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(b, c, width, height)
            return self.gamma * out + x

    torch.manual_seed(0)
    module = Self_Attn(16).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
    layer = SelfAttention(key_channels=2)
    spec = attention_spec().replace(
        data_shape=(2, 3, 16),
        discriminator=(layer, Flatten(), Dense(units=1)),
        generator=(Dense(units=96), Reshape(shape=(2, 3, 16))),
    )
    params = randomised(spec, rng)
    for key, value in module.state_dict().items():
        part, _, kind = key.partition("_conv.")
        short = "gamma" if key == "gamma" else f"{part}_{'kernel' if kind == 'weight' else 'bias'}"
        params[f"discriminator.0.{short}"] = from_torch_layout(short, value.numpy())
    x = rng.standard_normal((2, 2, 3, 16))
    want = module(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().permute(0, 2, 3, 1).numpy()
    got = make("jax", spec, params).activations("discriminator", x)[0]
    assert_close(got, want, 1e-13)
