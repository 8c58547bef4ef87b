"""A Keras GAN (a ``keras.Model`` holding ``generator``, ``discriminator``, ``g_optimizer`` and
``d_optimizer``, as the Keras GAN examples compile it) trained by a hand-written GradientTape
loop, saved with ``save_weights``, moved with its Adam state by ``port --to checkpoint``; the
ported state's next step in each stack against the Keras loop's own next step."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends import get_backend
from gan_backends.backends.base import TrainBatch
from gan_backends.port import PortError, port, read_native, to_canonical
from gan_backends.port.spec_from import spec_from_models
from gan_backends.spec import AdamSpec
from gan_backends.train import load_checkpoint

pytestmark = pytest.mark.xdist_group("port-optimizer-state-keras")
LATENT, BATCH = 4, 8
KERAS_ADAM = AdamSpec(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-7, form="keras")


def _keras_gan():
    import keras

    class GAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.generator = keras.Sequential(
                [keras.Input((LATENT,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
            )
            self.discriminator = keras.Sequential(
                [keras.Input((2,)), keras.layers.Dense(16), keras.layers.LeakyReLU(0.2), keras.layers.Dense(1)]
            )
            self.built = True

        def compile(self, d_optimizer, g_optimizer):
            super().compile()
            self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

    keras.utils.set_random_seed(0)
    gan = GAN()
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    return gan


def _keras_step(gan, batch: TrainBatch) -> None:
    import keras
    import tensorflow as tf

    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    real, z_d, z_g = batch.real[0], batch.z_d[0], batch.z_g
    with tf.GradientTape() as tape:
        real_logits, fake_logits = gan.discriminator(real), gan.discriminator(gan.generator(z_d))
        loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
    d_vars = gan.discriminator.trainable_weights
    gan.d_optimizer.apply_gradients(zip(tape.gradient(loss, d_vars), d_vars))
    with tf.GradientTape() as tape:
        logits = gan.discriminator(gan.generator(z_g))
        loss = bce(tf.ones_like(logits), logits)
    g_vars = gan.generator.trainable_weights
    gan.g_optimizer.apply_gradients(zip(tape.gradient(loss, g_vars), g_vars))


def _batches(steps: int) -> list[TrainBatch]:
    rng = np.random.default_rng(1)
    f32 = np.float32
    return [TrainBatch(rng.normal(0, 1, (1, BATCH, 2)).astype(f32), rng.normal(0, 1, (1, BATCH, LATENT)).astype(f32),
                       rng.normal(0, 1, (BATCH, LATENT)).astype(f32)) for _ in range(steps)]  # fmt: skip


def _update_error(got: dict, before: dict, after: dict) -> float:
    """The worst tensor's distance of the update taken from the Keras loop's, relative to it."""
    worst = 0.0
    for n in before:
        want = after[n] - before[n]
        worst = max(worst, float(np.max(np.abs(got[n] - before[n] - want)) / max(np.max(np.abs(want)), 1e-12)))
    return worst


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory) -> dict:
    require_backend("tensorflow")
    folder = tmp_path_factory.mktemp("keras-run")
    gan = _keras_gan()
    spec = spec_from_models(gan.generator, gan.discriminator).spec
    spec = spec.replace(g_optimizer=KERAS_ADAM, d_optimizer=KERAS_ADAM)
    batches = _batches(4)
    for batch in batches[:3]:
        _keras_step(gan, batch)
    gan.save_weights(folder / "gan.weights.h5")
    _keras_step(gan, batches[3])
    gan.save_weights(folder / "step4.weights.h5")
    before = to_canonical(read_native(folder / "gan.weights.h5"), spec)[0]
    after = to_canonical(read_native(folder / "step4.weights.h5"), spec)[0]
    return {"folder": folder, "spec": spec, "next": batches[3], "before": before, "after": after}


@pytest.mark.parametrize("target", ["tensorflow", "torch", "jax"])
def test_the_ported_keras_state_takes_the_keras_loops_next_step(keras_run, target, tmp_path):
    require_backend(target)
    spec = keras_run["spec"]
    result = port(keras_run["folder"] / "gan.weights.h5", spec, "checkpoint", tmp_path / "moved.safetensors")
    assert result.passed, result.summary()
    assert any("optimiser read from g_optimizer/ (Keras adam, 3 steps" in n for n in result.notes), result.notes
    moved = load_checkpoint(tmp_path / "moved.safetensors")
    assert moved.optimizer.steps == {"generator": 3, "discriminator": 3}
    backend = get_backend(target)(spec, moved.params, device="cpu")
    backend.set_optimizer_state(moved.optimizer)
    backend.train_step(keras_run["next"])
    assert _update_error(backend.get_params(), keras_run["before"], keras_run["after"]) < 2e-3


def test_a_torch_form_spec_refuses_keras_adam_state(keras_run, tmp_path):
    torch_form = AdamSpec(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-7)
    spec = keras_run["spec"].replace(g_optimizer=torch_form, d_optimizer=torch_form)
    with pytest.raises(PortError, match="has form keras, the spec's adam.form torch"):
        port(keras_run["folder"] / "gan.weights.h5", spec, "checkpoint", tmp_path / "x.safetensors")


def test_the_keras_state_matters(keras_run):
    """A fresh Keras-form Adam from the same weights takes another step: the yardstick can fail."""
    require_backend("torch")
    backend = get_backend("torch")(keras_run["spec"], keras_run["before"], device="cpu")
    backend.train_step(keras_run["next"])
    assert _update_error(backend.get_params(), keras_run["before"], keras_run["after"]) > 0.3
