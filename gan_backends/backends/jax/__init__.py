"""JAX: ``flax.linen`` networks and ``optax`` optimisers, the whole step under ``jax.jit``.

The package's modules: ``layers`` (spec layer → Flax module builder table), ``optim``
(optax chains in torch's form), ``backend`` (:class:`JaxBackend`), ``parallel`` (``jax.jit``
over a device ``Mesh``), ``checkpoint`` (Flax msgpack and orbax files; Flax modules for port
verification), ``losscheck`` (a user's loss under ``jax.grad``), ``introspect`` (the spec
read from a user's Flax linen or NNX module, with ``introspect_nnx`` and ``introspect_ops``).
This file imports no framework: it holds the manifest the rest of the suite reads.
"""

from __future__ import annotations

import os
import sys

from ..manifest import CheckpointKind, Manifest


def host_device_flag(count: int) -> str:
    """The ``XLA_FLAGS`` entry that splits the host CPU into ``count`` devices; it must be in the
    environment before jax is imported."""
    return f"--xla_force_host_platform_device_count={count}"


def before_start(devices: int, platform: str | None) -> None:
    """XLA reads its host-device count once, when jax starts."""
    if platform == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {host_device_flag(devices)}".strip()


MANIFEST = Manifest(
    name="jax",
    package=__name__,
    backend="backend:JaxBackend",
    requires=("jax", "flax", "optax"),
    extra="jax",
    aliases=("flax",),
    layer_tables=("layers:LAYER_BUILDERS", "checkpoint:FLAX_LAYERS"),
    modes=("jit", "eager"),
    # jax.jit over the mesh.
    data_parallel_modes=("jit",),
    checkpoint_kinds=(
        CheckpointKind(
            "flax", (".msgpack", ".flax"), layout="flax", aliases=("jax",), directory=True, suggested=(".msgpack",)
        ),
    ),
    framework_defaults={
        "leaky_relu_slope": 0.01,
        "adam_eps": 1e-8,
        "batchnorm": (0.01, 1e-5),
        "init": "lecun_normal",
        "bce": "logits",
    },
    before_start=before_start,
    model_modules=("flax",),
)
