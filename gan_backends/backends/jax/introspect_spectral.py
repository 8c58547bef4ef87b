"""``flax.linen.SpectralNorm`` read as the layer it wraps with the spec's ``spectral_norm`` (for
:mod:`.introspect`, which calls :func:`spectral_norm` as a leaf reader).

Flax 0.12's ``SpectralNorm(layer_instance, n_steps=1, epsilon=1e-12)`` (flax/linen/
normalization.py) runs ``n_steps`` of ``v = l2n(u Wᵀ)``, ``u = l2n(v W)`` from the stored ``u``
on every call, ``l2n(x) = x · rsqrt(Σx² + eps)``, and divides the kernel by ``σ = v W uᵀ``
(``u``, ``v`` without gradient); ``update_stats=True`` stores the new ``u``. That is torch's
training step but for the eps (in the root, not a floor on the norm); its inference differs:
it iterates again, where torch's (the spec's) uses the stored pair. The port stores the pair
Flax's inference computes (:func:`gan_backends.port.spectral_vectors.flax_vectors`), so the
eval logits are Flax's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from ...spec import SpectralNormSpec


def spectral_norm(reader: Any, call: Any) -> None:
    """The wrapped ``nn.Dense`` or ``nn.Conv`` read on the wrapper's input, then its
    ``spectral_norm`` set from ``n_steps`` and ``epsilon``; anything else wrapped is refused."""
    module = call.module
    inner = module.layer_instance
    if type(inner) not in (nn.Dense, nn.Conv):
        raise reader.fail(
            f"SpectralNorm({type(inner).__name__}): the spec's spectral norm is an option of Dense and Conv2D"
        )
    if module.n_steps < 1:
        raise reader.fail(f"n_steps={module.n_steps}: Flax then normalises nothing; the spec iterates at least once")
    if module.collection_name != "batch_stats":
        raise reader.fail(f"collection_name={module.collection_name!r}: the port reads u from 'batch_stats'")
    start = len(reader.layers)
    inner_call = dataclasses.replace(call, module=inner, kwargs={})
    (reader.dense if isinstance(inner, nn.Dense) else reader.conv)(inner_call)
    sn = SpectralNormSpec(n_power_iterations=int(module.n_steps), eps=float(module.epsilon))
    reader.layers[start] = dataclasses.replace(reader.layers[start], spectral_norm=sn)
    reader.note(
        f"SpectralNorm(n_steps={module.n_steps}, epsilon={module.epsilon:g}) -> spectral_norm(n_power_iterations="
        f"{sn.n_power_iterations}, eps={sn.eps:g}). Flax's inference iterates from u again; the port stores the "
        "(u, v) it computes, so the eval logits are Flax's own. Training continues under torch's semantics, "
        "Flax's but for the eps: a floor on the norm, where Flax adds it inside the root"
    )
