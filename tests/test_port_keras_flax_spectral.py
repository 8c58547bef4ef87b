"""Discriminators normalised by Keras' and Flax's own spectral norms, trained by their own
frameworks, ported through the CLI and run in our stacks with the frameworks' own eval logits.

Keras: a ``Sequential`` of ``SpectralNormalization(Conv2D)``, ``LeakyReLU``,
``SpectralNormalization(Conv2D)``, ``Flatten``, ``SpectralNormalization(Dense(1))``, trained
with its own ``model.fit`` (so ``vector_u`` and the kernels moved, the kernels overwritten with
W/σ by the training calls), saved with ``model.save_weights`` and ``model.save``. Flax: the same
D with ``nn.SpectralNorm(nn.Conv)``/``nn.SpectralNorm(nn.Dense(1))``, trained with optax
(``update_stats=True``, ``mutable=['batch_stats']``), saved with ``flax.serialization.to_bytes``.
Then the user's commands: ``spec-from`` (the spec read from the models), ``port`` to the other
forms, ``discriminate`` in each backend. Every expected value is the framework's own inference:
``model(x, training=False)``, ``D.apply(..., update_stats=False)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend
from harness import user_module
from typer.testing import CliRunner

from gan_backends.cli import app

runner = CliRunner()
pytestmark = pytest.mark.xdist_group("port-keras-flax-spectral")
SN_KERAS = {"n_power_iterations": 1, "eps": 1e-07}  # keras.config.epsilon(), normalize's floor
SN_FLAX = {"n_power_iterations": 1, "eps": 1e-12}  # nn.SpectralNorm's epsilon


def _invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _images(folder: Path) -> Path:
    x = np.random.default_rng(7).uniform(-1, 1, (6, 8, 8, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder / "x.npy"


def _discriminate(path: Path, spec: Path, backend: str, images: Path, out: Path) -> np.ndarray:
    _invoke("discriminate", path, "--spec", spec, "--backend", backend, "--images", images, "--out", out)
    return np.load(out)


# -- Keras -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_d(tmp_path_factory) -> dict:
    require_backend("tensorflow")
    import keras

    L = keras.layers
    folder = tmp_path_factory.mktemp("keras_sn")
    keras.utils.set_random_seed(0)
    d = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.SpectralNormalization(L.Conv2D(4, 4, strides=2, padding="same")),
            L.LeakyReLU(0.1),
            L.SpectralNormalization(L.Conv2D(8, 4, padding="valid")),
            L.Flatten(),
            L.SpectralNormalization(L.Dense(1)),
        ]
    )
    g = keras.Sequential([keras.Input((4,)), L.Dense(192), L.Reshape((8, 8, 3)), L.Activation("tanh")])
    start = d.get_weights()
    d.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, (16, 8, 8, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    d.fit(x, y, epochs=2, batch_size=8, verbose=0)
    moved = [w for w, w0 in zip(d.weights, start) if w.shape != (1, 1) and not np.allclose(w.numpy(), w0)]
    assert {w.name for w in moved} >= {"kernel", "vector_u"}  # u and the kernels moved
    d.save_weights(folder / "d.weights.h5")
    d.save(folder / "d.keras")
    g.save(folder / "g.keras")
    images = _images(folder)
    return {"folder": folder, "images": images, "expected": np.asarray(d(np.load(images), training=False))}


def test_keras_spectral_normalization_reads_as_the_spec_option_with_the_note(keras_d, tmp_path):
    """``spec-from`` reads each wrapper as its Dense/Conv2D with ``spectral_norm`` (Keras'
    ``power_iterations``, ``keras.config.epsilon()``) and says training continues under torch's
    semantics; wrapping anything else is refused naming the layer."""
    folder = keras_d["folder"]
    text = _invoke("spec-from", folder / "g.keras", "--discriminator", folder / "d.keras", "--out", tmp_path / "s.json")
    assert "Training continues under torch's semantics" in text and "overwrote the kernel" in text
    d = json.loads((tmp_path / "s.json").read_text())["discriminator"]
    assert [layer.get("spectral_norm") for layer in d] == [SN_KERAS, None, SN_KERAS, None, SN_KERAS]

    import keras

    from gan_backends.port.spec_from import NotExpressible, read_network

    transposed = keras.layers.SpectralNormalization(keras.layers.Conv2DTranspose(2, 2))
    wrapped = keras.Sequential([keras.Input((4, 4, 2)), transposed])
    with pytest.raises(
        NotExpressible, match=r"layer 0 \(SpectralNormalization\): SpectralNormalization\(Conv2DTranspose\)"
    ):
        read_network(wrapped)


@pytest.mark.parametrize(
    "backend, via",
    [("tensorflow", None), ("torch", "torch"), ("jax", "jax")],
)
def test_a_keras_spectral_norm_critic_ports_with_its_eval_logits(keras_d, backend, via, tmp_path):
    """The Keras file (read by the tensorflow backend itself) and its ports to torch and Flax
    give ``model(x, training=False)`` within 1e-5: σ = uᵀWv = 1 on the kernel Keras stores."""
    require_backend(backend)
    folder = keras_d["folder"]
    spec = tmp_path / "spec.json"
    _invoke("spec-from", folder / "g.keras", "--discriminator", folder / "d.keras", "--out", spec)
    source = folder / "d.weights.h5"
    if via is not None:
        names = {"torch": "d.pth", "jax": "d.msgpack"}
        out = _invoke("port", source, "--spec", spec, "--to", via, "--out", tmp_path / names[via],
                      "--networks", "discriminator")  # fmt: skip
        assert "agreement: discriminator" in out
        source = tmp_path / names[via]
    logits = _discriminate(source, spec, backend, keras_d["images"], tmp_path / "logits.npy")
    error = _relative(logits, keras_d["expected"])
    print(f"keras SpectralNormalization -> {backend}: logits relative error {error:.2e}")
    assert error < 1e-5, error


# -- Flax --------------------------------------------------------------------------------------

FLAX_CODE = """
import flax.linen as nn
import jax.numpy as jnp


class Generator(nn.Module):
    @nn.compact
    def __call__(self, z):
        return jnp.tanh(nn.Dense(192)(z).reshape((z.shape[0], 8, 8, 3)))


class Discriminator(nn.Module):
    @nn.compact
    def __call__(self, x, update_stats: bool = False):
        x = nn.SpectralNorm(nn.Conv(4, (4, 4), strides=(2, 2), padding=1))(x, update_stats=update_stats)
        x = nn.leaky_relu(x, 0.1)
        x = nn.SpectralNorm(nn.Conv(8, (4, 4), padding="VALID"))(x, update_stats=update_stats)
        x = x.reshape((x.shape[0], -1))
        return nn.SpectralNorm(nn.Dense(1))(x, update_stats=update_stats)
"""


@pytest.fixture(scope="module")
def flax_d(tmp_path_factory) -> dict:
    require_backend("jax")
    import jax
    import optax
    from flax import serialization

    folder = tmp_path_factory.mktemp("flax_sn")
    module = user_module(folder / "flax_sn_models.py", FLAX_CODE, "flax_sn_models_for_test")
    d = module.Discriminator()
    rng = np.random.default_rng(1)
    variables = d.init(jax.random.PRNGKey(0), np.zeros((2, 8, 8, 3), np.float32))
    params, stats = variables["params"], variables["batch_stats"]
    start = jax.tree_util.tree_map(np.asarray, stats)
    opt = optax.adam(1e-2)
    state = opt.init(params)
    for _ in range(3):
        x = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)

        def loss(p, x=x, stats=stats):
            y, new = d.apply({"params": p, "batch_stats": stats}, x, update_stats=True, mutable=["batch_stats"])
            return (y**2).mean(), new["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    u0, u1 = start["SpectralNorm_0"]["Conv_0/kernel/u"], np.asarray(stats["SpectralNorm_0"]["Conv_0/kernel/u"])
    assert np.abs(u0 - u1).max() > 1e-3  # the stored u moved
    variables = {"params": params, "batch_stats": stats}
    (folder / "d.msgpack").write_bytes(serialization.to_bytes(variables))
    images = _images(folder)
    expected = np.asarray(d.apply(variables, np.load(images), update_stats=False))
    models = folder / "flax_sn_models.py"
    return {"folder": folder, "images": images, "expected": expected, "models": models}


def _flax_spec(flax_d: dict, path: Path) -> str:
    models = flax_d["models"]
    return _invoke("spec-from", f"{models}:Generator", "--discriminator", f"{models}:Discriminator",
                   "--latent-dim", "4", "--out", path)  # fmt: skip


def test_flax_spectral_norm_reads_as_the_spec_option(flax_d, tmp_path):
    """``spec-from`` reads each ``nn.SpectralNorm`` as the Dense/Conv it wraps with
    ``spectral_norm`` (``n_steps``, ``epsilon``)."""
    text = _flax_spec(flax_d, tmp_path / "s.json")
    assert "Flax's inference iterates from u again" in text
    d = json.loads((tmp_path / "s.json").read_text())["discriminator"]
    assert [layer.get("spectral_norm") for layer in d] == [SN_FLAX, None, SN_FLAX, None, SN_FLAX]


@pytest.mark.parametrize("backend, via", [("jax", None), ("torch", "torch"), ("tensorflow", "tensorflow")])
def test_a_flax_spectral_norm_critic_ports_with_its_eval_logits(flax_d, backend, via, tmp_path):
    """The msgpack file (read by the JAX backend itself) and its ports to torch and Keras give
    ``apply(..., update_stats=False)`` within 1e-5: the stored (u, v) are those Flax's inference
    iteration computes from its u."""
    require_backend(backend)
    spec = tmp_path / "spec.json"
    _flax_spec(flax_d, spec)
    source = flax_d["folder"] / "d.msgpack"
    if via is not None:
        name = {"torch": "d.pth", "tensorflow": "d.weights.h5"}[via]
        out = _invoke("port", source, "--spec", spec, "--to", via, "--out", tmp_path / name,
                      "--networks", "discriminator")  # fmt: skip
        assert "agreement: discriminator" in out
        source = tmp_path / name
    logits = _discriminate(source, spec, backend, flax_d["images"], tmp_path / "logits.npy")
    error = _relative(logits, flax_d["expected"])
    print(f"flax SpectralNorm -> {backend}: logits relative error {error:.2e}")
    assert error < 1e-5, error


def test_flax_vectors_follow_the_specs_n_power_iterations_and_eps(tmp_path):
    """``n_steps=2``, ``epsilon=1e-3`` (in no file: the spec gives them), the wrapper built outside
    any module (its kernel under ``layer_instance``): the reference's eval logits are Flax's
    own; a spec with one iteration (as the default) is not."""
    require_backend("jax")
    import flax.linen as nn
    import jax
    from flax import serialization

    from gan_backends.backends.numpy.network import Network
    from gan_backends.port import read_native, to_canonical
    from gan_backends.presets import get_preset
    from gan_backends.spec import Dense, Tanh

    rng = np.random.default_rng(3)
    theirs = nn.SpectralNorm(nn.Dense(1), n_steps=2, epsilon=1e-3)
    x = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
    variables = jax.tree_util.tree_map(np.asarray, theirs.init(jax.random.PRNGKey(0), x, update_stats=False))
    variables["params"]["layer_instance"]["kernel"] = rng.normal(size=(6, 1)).astype(np.float32)
    (tmp_path / "d.msgpack").write_bytes(serialization.to_bytes(variables))
    expected = np.asarray(theirs.apply(variables, x, update_stats=False))

    def logits(sn: dict) -> np.ndarray:
        spec = get_preset("dcgan-small").replace(
            latent_dim=2,
            data_shape=(6,),
            generator=(Dense(units=6), Tanh()),
            discriminator=(Dense(units=1, spectral_norm=sn),),
        )
        params, buffers = to_canonical(read_native(tmp_path / "d.msgpack"), spec, networks="discriminator")
        return Network(spec, "discriminator").forward({**params, **buffers}, x.astype(np.float64))[0]

    assert _relative(logits({"n_power_iterations": 2, "eps": 1e-3}), expected) < 1e-5
    assert _relative(logits({"n_power_iterations": 1, "eps": 1e-3}), expected) > 1e-4
