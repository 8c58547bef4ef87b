"""A Keras 3 optimiser's variables in a ``.weights.h5`` read as a
:class:`~gan_backends.port.native.NativeOptimizer`.

A ``keras.Model`` holding ``self.generator``, ``self.discriminator``, ``self.g_optimizer`` and
``self.d_optimizer`` (the Keras GAN examples' ``compile(d_optimizer, g_optimizer)``) saves each
optimiser as ``<attribute>/vars/i`` (``keras/src/saving/saving_lib.py``)::

    g_optimizer/vars            attrs {"name": "adam_1"}   (the optimiser's class, snake-cased)
    g_optimizer/vars/0          iterations
    g_optimizer/vars/1          learning_rate (float32)
    g_optimizer/vars/2, 3, ...  Adam: each trainable variable's momentum, then its velocity
                                SGD: each variable's momentum (with momentum > 0)

in the order of the network's trainable variables: the spec's parameter order for a model the
spec describes, in canonical layout (``order="spec"``). The file keeps the learning rate but not
``beta_1``, ``beta_2``, ``epsilon``: those are the spec's, unverified. Keras' Adam is the
epsilon-hat form (``AdamSpec.form="keras"``). RMSprop's blocks (velocities, then momentums or
average gradients) depend on settings the file does not keep: refused, named.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ...port.native import NativeOptimizer, PortError, optimizer_hint

#: Keras class (snake-cased, as the ``vars`` group's name) -> the spec's optimiser, its slots per variable.
KERAS_OPTIMIZERS: dict[str, tuple[str, tuple[str, ...]]] = {"adam": ("adam", ("m", "v")), "sgd": ("sgd", ("momentum",))}


def keras_optimizers(f: Any) -> tuple[dict[str, NativeOptimizer], set[str], list[str]]:
    """``(optimisers per network, the top-level groups they occupy, notes)`` of an h5 file."""
    found: dict[str, NativeOptimizer] = {}
    tops: set[str] = set()
    notes = []
    for top in f:
        group = f[top]
        if "vars" not in group or not hasattr(group["vars"], "attrs"):
            continue
        name = group["vars"].attrs.get("name", "")
        name = name.decode() if isinstance(name, bytes) else str(name)
        network = optimizer_hint(top)
        if network is None:
            continue
        tops.add(top)
        kind = re.sub(r"_\d+$", "", name)
        if kind not in KERAS_OPTIMIZERS:
            raise PortError(
                f"{top}: a Keras {name!r} optimiser; its variables are read for Adam and SGD (RMSprop's layout "
                "depends on settings the file does not keep)"
            )
        spec_name, per_variable = KERAS_OPTIMIZERS[kind]
        values = [np.asarray(group["vars"][k]) for k in sorted(group["vars"], key=int)]
        if len(values) < 2:
            raise PortError(f"{top}: a Keras optimiser without its iterations and learning rate")
        rest = values[2:]
        slots: dict[str, list[np.ndarray | None]] = {slot: [] for slot in per_variable}
        if spec_name == "sgd" and not rest:
            slots = {}
        elif len(rest) % len(per_variable):
            raise PortError(f"{top}: {len(rest)} state variables, not {len(per_variable)} per parameter ({kind})")
        else:
            for i, array in enumerate(rest):
                slots[per_variable[i % len(per_variable)]].append(array.astype(np.float32))
        hyper: dict[str, float | bool | str] = {"lr": float(values[1])}
        if spec_name == "adam":
            hyper["form"] = "keras"
        found[network] = NativeOptimizer(spec_name, hyper, int(values[0]), slots, top, order="spec")
        notes.append(
            f"{network} optimiser read from {top}/ (Keras {kind}, {int(values[0])} steps, learning rate "
            f"{float(values[1]):g}; its other hyper-parameters are not in the file: the spec's are used)"
        )
    return found, tops, notes
