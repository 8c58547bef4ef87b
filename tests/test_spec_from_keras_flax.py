"""The spec read from a user's own Keras model and Flax module (issue 18, point 1).

Each model is written as the TensorFlow DCGAN tutorial and the Flax examples write theirs
(small sizes), read with ``spec_from_models``, and checked twice: layer by layer against values
derived by hand from the frameworks' documented defaults (Keras: BatchNorm epsilon 1e-3,
momentum 0.99, i.e. the spec's 0.01, LeakyReLU slope 0.3; Flax: epsilon 1e-5, leaky_relu
0.01), and independently by running the read spec in the float64 NumPy reference with the
model's own weights, saved by the framework and converted by the port, against the model's own
inference output, with BatchNorm statistics that are not the fresh ones. Refusals name the
layer's position and class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends.numpy.network import Network
from gan_backends.port import read_native, to_canonical
from gan_backends.port.spec_from import NotExpressible, load_model, spec_from_models
from gan_backends.spec import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Tanh,
    Upsample,
)

LATENT = 8


def _reference(spec, params, buffers, z: np.ndarray) -> np.ndarray:
    out, _ = Network(spec, "generator").forward({**params, **buffers}, z.astype(np.float64))
    return out


# -- Keras -------------------------------------------------------------------------------------


@pytest.fixture
def keras():
    require_backend("tensorflow")
    import keras

    return keras


def tutorial_generator(keras):
    """The TensorFlow DCGAN tutorial's ``make_generator_model``, at 16x16 instead of 28x28."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((LATENT,)),
            layers.Dense(4 * 4 * 16, use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Reshape((4, 4, 16)),
            layers.Conv2DTranspose(8, (5, 5), strides=(1, 1), padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(4, (5, 5), strides=(2, 2), padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"),
        ]
    )


def _keras_statistics(keras, model, rng: np.random.Generator) -> None:
    """gamma, beta, moving mean and variance away from 1, 0, 0, 1 (as after training)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.normal(0, 0.3, c),
                    rng.normal(0, 0.5, c),
                    rng.uniform(0.3, 2.0, c),
                ]
            )


def test_keras_tutorial_generator_reads_every_default_and_runs_as_the_model(keras, tmp_path: Path, rng):
    model = tutorial_generator(keras)
    _keras_statistics(keras, model, rng)
    read = spec_from_models(model)
    bn = BatchNorm(momentum=0.01, eps=1e-3, running_var="biased")  # Keras' 0.99 is the running value's weight
    assert read.framework == "tensorflow"
    assert read.spec.generator == (
        Dense(units=256, use_bias=False),
        bn,
        LeakyReLU(slope=0.3),
        Reshape(shape=(4, 4, 16)),
        ConvTranspose2D(filters=8, kernel=5, stride=1, padding="same", use_bias=False),
        bn,
        LeakyReLU(slope=0.3),
        ConvTranspose2D(filters=4, kernel=5, stride=2, padding="same", use_bias=False),
        bn,
        LeakyReLU(slope=0.3),
        ConvTranspose2D(filters=1, kernel=5, stride=2, padding="same", use_bias=False),
        Tanh(),
    )
    assert (read.spec.latent_dim, read.spec.data_shape) == (LATENT, (16, 16, 1))
    notes = "\n".join(read.notes)
    assert "slope 0.3 (Keras' default)" in notes
    assert "momentum 0.99, epsilon 0.001 (Keras' defaults) -> BatchNorm(momentum=0.01, eps=0.001)" in notes
    assert "activation='tanh' -> a separate Tanh()" in notes

    path = tmp_path / "g.weights.h5"
    model.save_weights(str(path))
    params, buffers = to_canonical(read_native(path), read.spec, networks="generator")
    z = rng.normal(size=(3, LATENT)).astype(np.float32)
    theirs = np.asarray(model(z, training=False))
    np.testing.assert_allclose(_reference(read.spec, params, buffers, z), theirs, rtol=0, atol=1e-5)


def test_keras_upsampling_and_average_pooling_read_and_run_as_the_model(keras, tmp_path: Path, rng):
    """``UpSampling2D`` (nearest, bilinear: half-pixel centres) and ``AveragePooling2D`` ('valid';
    'same' where it pads: the padded zeros not counted, unlike torch's default) as derived by
    hand; the read spec in the float64 reference gives the model's own output."""
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((LATENT,)),
            L.Dense(12),
            L.Reshape((2, 2, 3)),
            L.UpSampling2D(2),
            L.AveragePooling2D(2, strides=1),
            L.UpSampling2D(2, interpolation="bilinear"),
            L.AveragePooling2D(3, strides=2, padding="same"),  # 6x6 -> 3x3: one padded row and column
            L.Activation("tanh"),
        ]
    )
    read = spec_from_models(model)
    assert read.spec.generator == (
        Dense(units=12),
        Reshape(shape=(2, 2, 3)),
        Upsample(factor=2, method="nearest"),
        AvgPool2D(pool=2, stride=1, padding="valid"),
        Upsample(factor=2, method="bilinear", align_corners=False),
        AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False),
        Tanh(),
    )
    assert "padded zeros are not counted" in "\n".join(read.notes)
    path = tmp_path / "g.weights.h5"
    model.save_weights(str(path))
    params, buffers = to_canonical(read_native(path), read.spec, networks="generator")
    z = rng.normal(size=(3, LATENT)).astype(np.float32)
    theirs = np.asarray(model(z, training=False))
    np.testing.assert_allclose(_reference(read.spec, params, buffers, z), theirs, rtol=0, atol=1e-5)


def test_keras_archive_and_builder_are_read(keras, tmp_path: Path):
    layers = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(4, 3, strides=2, padding="valid")])
    model.add(layers.ReLU())
    model.add(layers.Flatten())
    model.add(layers.Dense(1, activation="sigmoid"))
    model.save(str(tmp_path / "d.keras"))
    loaded = load_model(str(tmp_path / "d.keras"))
    from gan_backends.backends.tensorflow.introspect import layers_of

    read = layers_of(loaded, None)
    assert read.layers[:3] == (Conv2D(filters=4, kernel=3, stride=2, padding="valid"), ReLU(), Flatten())
    assert [type(layer).__name__ for layer in read.layers[3:]] == ["Dense", "Sigmoid"]
    assert (read.input_shape, read.output_shape) == ((6, 6, 2), (1,))

    builder = tmp_path / "models.py"
    builder.write_text(
        "import keras\n"
        "def build():\n"
        "    return keras.Sequential([keras.layers.Dense(4, activation='relu'), keras.layers.Dense(2)])\n"
    )
    unbuilt = load_model(f"{builder}:build")
    with pytest.raises(ValueError, match="input shape is unknown"):
        layers_of(unbuilt, None)
    assert layers_of(unbuilt, (3,)).layers == (Dense(units=4), ReLU(), Dense(units=2))


@pytest.mark.parametrize(
    "make, where",
    [
        (lambda L: L.Dropout(0.3), "layer 1 (Dropout): dropout"),
        (lambda L: L.Conv2D(2, 3, dilation_rate=2), "layer 1 (Conv2D): dilation_rate=(2, 2)"),
        (lambda L: L.UpSampling2D(interpolation="bicubic"), "layer 1 (UpSampling2D): interpolation='bicubic'"),
        # Dense and Conv2D are read (tests/test_port_keras_flax_spectral.py)
        (
            lambda L: L.SpectralNormalization(L.Conv2DTranspose(2, 3)),
            "layer 1 (SpectralNormalization): SpectralNormalization(Conv2DTranspose): the spec's spectral norm",
        ),
        (lambda L: L.ReLU(max_value=6.0), "layer 1 (ReLU): max_value=6.0"),
        (lambda L: L.BatchNormalization(center=False), "layer 1 (BatchNormalization): center=False"),
        (lambda L: L.Activation("elu"), "layer 1 (Activation): activation 'elu'"),
    ],
)
def test_keras_layers_the_spec_cannot_express_are_named(keras, make, where):
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(2, 3), make(keras.layers)])
    with pytest.raises(NotExpressible, match=f"^keras model {where}".replace("(", r"\(").replace(")", r"\)")):
        spec_from_models(model)


def test_keras_functional_chain_with_a_nested_model_is_read(keras):
    layers = keras.layers
    x = keras.Input((4,))
    block = keras.Sequential([layers.Dense(6, activation="leaky_relu"), layers.BatchNormalization(momentum=0.9)])
    y = layers.Dense(1)(block(layers.Dense(5, use_bias=False)(x)))
    read = spec_from_models(keras.Model(x, y))
    assert read.spec.generator == (
        Dense(units=5, use_bias=False),
        Dense(units=6),
        LeakyReLU(slope=0.2),  # keras.activations.leaky_relu's default, not the layer's 0.3
        BatchNorm(momentum=0.1, eps=1e-3, running_var="biased"),
        Dense(units=1),
    )


def test_keras_branching_graph_is_refused(keras):
    x = keras.Input((4,))
    y = keras.layers.Dense(4)(x)
    with pytest.raises(NotExpressible, match=r"layer 1 \(Add\): not fed by the layer before it"):
        spec_from_models(keras.Model(x, keras.layers.Add()([x, y])))


# -- Flax --------------------------------------------------------------------------------------


@pytest.fixture
def flax_modules():
    require_backend("jax")
    import flax.linen as nn

    class Generator(nn.Module):
        """As the Flax DCGAN examples write one: a ``train`` flag, activations as functions,
        an odd 'SAME' transposed conv, and explicit padding pairs (torch's padding=2,
        output_padding=1 written in Flax's terms)."""

        @nn.compact
        def __call__(self, z, train: bool = True):
            x = nn.Dense(4 * 4 * 8, use_bias=False)(z)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.leaky_relu(x, 0.2)
            x = x.reshape((x.shape[0], 4, 4, 8))
            x = nn.ConvTranspose(4, (5, 5), strides=(2, 2), padding="SAME", use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
            x = nn.ConvTranspose(1, (5, 5), strides=(2, 2), padding=((2, 3), (2, 3)))(x)
            return nn.tanh(x)

    return nn, Generator


def test_flax_generator_reads_every_default_and_runs_as_the_module(flax_modules, tmp_path: Path, rng):
    nn, Generator = flax_modules
    import jax
    from flax import serialization

    module = Generator()
    read = spec_from_models(module, latent_dim=LATENT)
    assert read.framework == "jax"
    assert read.spec.generator == (
        Dense(units=128, use_bias=False),
        BatchNorm(momentum=0.01, eps=1e-5, running_var="biased"),  # Flax's 0.99, its epsilon 1e-5
        LeakyReLU(slope=0.2),
        Reshape(shape=(4, 4, 8)),
        ConvTranspose2D(filters=4, kernel=5, stride=2, padding="same", use_bias=False),
        BatchNorm(momentum=0.1, eps=1e-5, running_var="biased"),
        ReLU(),
        # pairs (2, 3) pad the dilated input: crops (5-1-2, 5-1-3) = (2, 1), torch's padding=2, output_padding=1
        ConvTranspose2D(filters=1, kernel=5, stride=2, padding=2, output_padding=1),
        Tanh(),
    )
    assert read.spec.data_shape == (16, 16, 1)
    notes = "\n".join(read.notes)
    assert "momentum 0.99, epsilon 1e-05 (Flax's defaults) -> BatchNorm(momentum=0.01, eps=1e-05)" in notes
    assert "padding=2, output_padding=1" in notes and "{'train': False}" in notes

    z = rng.normal(size=(3, LATENT)).astype(np.float32)
    variables = module.init(jax.random.PRNGKey(1), z, train=False)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    for name, stats in variables["batch_stats"].items():
        c = stats["mean"].shape[0]
        stats["mean"] = rng.normal(0, 0.5, c).astype(np.float32)
        stats["var"] = rng.uniform(0.3, 2.0, c).astype(np.float32)
        variables["params"][name]["scale"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        variables["params"][name]["bias"] = rng.normal(0, 0.3, c).astype(np.float32)
    path = tmp_path / "g.msgpack"
    path.write_bytes(serialization.msgpack_serialize(variables))
    params, buffers = to_canonical(read_native(path), read.spec, networks="generator")
    theirs = np.asarray(module.apply(variables, z, train=False))
    np.testing.assert_allclose(_reference(read.spec, params, buffers, z), theirs, rtol=0, atol=1e-5)


def test_flax_needs_the_input_shape(flax_modules):
    _, Generator = flax_modules
    with pytest.raises(ValueError, match="does not know its input shape"):
        spec_from_models(Generator())


def _refused(nn, body):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return body(nn, nn.Dense(16)(x))

    return Net()


def relu(x):
    """Not a ReLU: a user's function that only shares the name."""
    return x * 2.0


@pytest.mark.parametrize(
    "body, where",
    [
        (lambda nn, x: nn.Dropout(0.3, deterministic=True)(x), r"layer 1 \(nn.Dropout\): Dropout_0: the spec has no"),
        (
            lambda nn, x: nn.Conv(2, (3, 3), kernel_dilation=2)(x.reshape(x.shape[0], 4, 4, 1)),
            r"layer 2 \(nn.Conv\): Conv_0: kernel_dilation=2",
        ),
        (lambda nn, x: x + nn.Dense(16)(x), r"layer 2 \(jax op add\): does not take the previous layer's output"),
        (lambda nn, x: x * 2.0, r"layer 1 \(jax op mul\): the spec has no layer for it"),
        (lambda nn, x: nn.LayerNorm()(x), r"layer 1 \(nn.LayerNorm\)"),
        (
            lambda nn, x: nn.SpectralNorm(nn.ConvTranspose(2, (3, 3)))(x.reshape(-1, 4, 4, 1), update_stats=False),
            r"layer 2 \(nn.SpectralNorm\): SpectralNorm_0: SpectralNorm\(ConvTranspose\): the spec's spectral norm",
        ),
        (lambda nn, x: nn.Dropout(0.3, deterministic=False)(x), r"layer 1 \(nn.Dropout\)"),
        (lambda nn, x: x.reshape(-1), r"layer 1 \(jax op reshape\): reshape to \(32,\) mixes the batch axis in"),
        (lambda nn, x: nn.Dense(1)(x).reshape(-1), r"layer 2 \(jax op reshape\): reshape to \(batch,\) drops"),
        (
            lambda nn, x: __import__("jax").jit(relu)(x),
            r"layer 1 \(jax op relu\): named like the spec's ReLU\(\) but computes something else",
        ),
    ],
)
def test_flax_ops_the_spec_cannot_express_are_named(flax_modules, body, where):
    nn, _ = flax_modules
    with pytest.raises(NotExpressible, match=f"^flax module {where}"):
        spec_from_models(_refused(nn, body), latent_dim=LATENT)


# -- Flax NNX ----------------------------------------------------------------------------------


def test_flax_nnx_module_is_read_without_touching_it(flax_modules, tmp_path: Path, rng):
    nn, _ = flax_modules
    import jax.numpy as jnp
    from flax import nnx, serialization

    class Generator(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.fc = nnx.Linear(LATENT, 4 * 4 * 8, use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(4 * 4 * 8, rngs=rngs)
            self.up = nnx.ConvTranspose(8, 1, (5, 5), strides=(2, 2), padding="SAME", rngs=rngs)

        def __call__(self, z):
            x = nnx.leaky_relu(self.bn(self.fc(z)))
            return jnp.tanh(self.up(x.reshape(x.shape[0], 4, 4, 8)))

    model = Generator(nnx.Rngs(0))
    call_before = nnx.Linear.__call__
    read = spec_from_models(model, latent_dim=LATENT)
    assert read.spec.generator == (
        Dense(units=128, use_bias=False),
        BatchNorm(momentum=0.01, eps=1e-5, running_var="biased"),
        LeakyReLU(slope=0.01),  # jax.nn.leaky_relu's default
        Reshape(shape=(4, 4, 8)),
        ConvTranspose2D(filters=1, kernel=5, stride=2, padding="same"),
        Tanh(),
    )
    assert model.bn.use_running_average is False and nnx.Linear.__call__ is call_before  # the user's, as it was
    assert "leaky_relu slope 0.01 (Flax's default)" in "\n".join(read.notes)

    c = 4 * 4 * 8
    model.bn.mean[...] = jnp.asarray(rng.normal(0, 0.5, c), jnp.float32)
    model.bn.var[...] = jnp.asarray(rng.uniform(0.3, 2.0, c), jnp.float32)
    model.bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
    # the port reads linen's collections and auto names: NNX's state filed under them
    bn = {"scale": model.bn.scale[...], "bias": model.bn.bias[...]}
    up = {"kernel": model.up.kernel[...], "bias": model.up.bias[...]}
    variables = {
        "params": {"Dense_0": {"kernel": model.fc.kernel[...]}, "BatchNorm_0": bn, "ConvTranspose_0": up},
        "batch_stats": {"BatchNorm_0": {"mean": model.bn.mean[...], "var": model.bn.var[...]}},
    }
    path = tmp_path / "g.msgpack"
    path.write_bytes(serialization.msgpack_serialize(variables))
    params, buffers = to_canonical(read_native(path), read.spec, networks="generator")
    z = rng.normal(size=(3, LATENT)).astype(np.float32)
    model.eval()
    np.testing.assert_allclose(_reference(read.spec, params, buffers, z), np.asarray(model(z)), rtol=0, atol=1e-5)


def test_flax_nnx_dropout_is_refused(flax_modules):
    from flax import nnx

    class Critic(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.fc = nnx.Linear(4, 4, rngs=rngs)
            self.drop = nnx.Dropout(0.3, rngs=rngs)

        def __call__(self, x):
            return self.drop(nnx.relu(self.fc(x)))

    with pytest.raises(NotExpressible, match=r"^flax module layer 2 \(nnx.Dropout\): the spec has no Dropout"):
        spec_from_models(Critic(nnx.Rngs(0)), latent_dim=4)
