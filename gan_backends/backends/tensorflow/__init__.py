"""TensorFlow 2: ``tf.Module`` networks trained under ``tf.GradientTape`` in a ``tf.function``.

The package's modules: ``layers`` (spec layer → ``tf.Module`` builder table), ``optim``
(optimisers in torch's form), ``backend`` (:class:`TensorFlowBackend`), ``parallel``
(``tf.distribute.MirroredStrategy``), ``checkpoint`` (Keras ``.weights.h5`` files; Keras
models for port verification), ``losscheck`` (a user's loss under ``tf.GradientTape``),
``introspect`` (the spec read from a user's Keras model, from its layer configs). This file
imports no framework: it holds the manifest the rest of the suite reads.
"""

from __future__ import annotations

import os

from ..manifest import CheckpointKind, Manifest


def before_start(devices: int, platform: str | None) -> None:
    """On a CPU the engine splits the CPU into logical devices: no GPU may be taken first."""
    if platform == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


MANIFEST = Manifest(
    name="tensorflow",
    package=__name__,
    backend="backend:TensorFlowBackend",
    requires=("tensorflow",),
    extra="tensorflow",
    aliases=("tf",),
    layer_tables=("layers:LAYER_BUILDERS", "checkpoint:KERAS_LAYERS"),
    modes=("function", "xla", "eager"),
    sweep_order=("xla", "function", "eager"),  # compiled first
    # The replicated step is one tf.function around strategy.run.
    data_parallel_modes=("function",),
    checkpoint_kinds=(
        CheckpointKind(
            "keras",
            (".weights.h5", ".h5", ".hdf5"),
            layout="canonical",
            aliases=("tensorflow", "tf"),
            suggested=(".weights.h5",),
            refused={".keras": "a whole .keras archive; save the weights with model.save_weights('x.weights.h5')"},
        ),
    ),
    framework_defaults={
        "leaky_relu_slope": 0.3,
        "adam_eps": 1e-7,
        "batchnorm": (0.01, 1e-3),
        "init": "glorot_uniform",
        "bce": "BinaryCrossentropy",
    },
    default_bce_ops="backend:TF_DEFAULT_BCE_OPS",
    before_start=before_start,
    model_modules=("keras", "tf_keras", "tensorflow"),
    model_files=(".keras",),
)
