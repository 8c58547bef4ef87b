"""Spectral normalisation on a user's torch layer read into the spec's ``spectral_norm`` option
(for :mod:`.introspect`).

Both torch APIs: ``torch.nn.utils.spectral_norm(m)`` registers a ``SpectralNorm`` forward
pre-hook (``n_power_iterations``, ``eps``, ``dim``); ``torch.nn.utils.parametrizations.
spectral_norm(m)`` puts a ``_SpectralNorm`` in ``m.parametrizations.weight`` (the same three).
Either is the spec's option (:mod:`gan_backends.spec.spectral`): in eval mode both compute
``σ = uᵀ W v`` from the stored vectors and iterate nothing, and a training forward runs
``n_power_iterations`` from the stored ``u``. They differ in the order of one iteration
(``v`` then ``u`` in the hook, ``u`` then ``v`` in the parametrization) and in the 15
iterations the parametrization runs when it is applied (docs/framework-differences.md): the
spec takes the hook's order, so a port of a parametrized model agrees in eval mode (what the
port verifies) and its training continues in the hook's order. What the spec cannot express
is a ``ValueError``: another ``dim`` than 0, a spectral norm on another tensor than
``weight``, weight normalisation or any other parametrization.
"""

from __future__ import annotations

import sys

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from ...spec.spectral import SpectralNormSpec

# The modules, not the functions of the same name that torch.nn.utils exports.
_HOOK = sys.modules["torch.nn.utils.spectral_norm"].SpectralNorm
_WEIGHT_NORM = sys.modules["torch.nn.utils.weight_norm"].WeightNorm


def _option(n_power_iterations: int, eps: float, dim: int, what: str) -> SpectralNormSpec:
    if dim != 0:
        raise ValueError(f"{what} with dim={dim}: the spec normalises the matrix weight.reshape(out, -1) (dim 0)")
    return SpectralNormSpec(n_power_iterations=int(n_power_iterations), eps=float(eps))


def spectral_norm_of(module: nn.Module) -> SpectralNormSpec | None:
    """The ``spectral_norm`` option of a ``Linear`` or ``Conv2d`` wrapped by either torch API
    (``None``: not wrapped); a ``ValueError`` for what the spec cannot express."""
    found: list[SpectralNormSpec] = []
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, _WEIGHT_NORM):
            raise ValueError("weight_norm: the spec has no weight normalisation")
        if isinstance(hook, _HOOK):
            if hook.name != "weight":
                raise ValueError(f"spectral_norm of {hook.name!r}: the spec normalises the weight")
            found.append(_option(hook.n_power_iterations, hook.eps, hook.dim, "spectral_norm"))
    if parametrize.is_parametrized(module):
        for name, plist in module.parametrizations.items():
            kinds = [type(p).__name__ for p in plist]
            if name != "weight" or len(plist) != 1 or not isinstance(plist[0], _SpectralNorm):
                raise ValueError(
                    f"parametrizations of {name!r}: {kinds}; the spec has one, parametrizations.spectral_norm of "
                    "the weight"
                )
            p = plist[0]
            found.append(_option(p.n_power_iterations, p.eps, p.dim, "parametrizations.spectral_norm"))
    if len(found) > 1:
        raise ValueError("spectral norm applied twice: the spec normalises once")
    return found[0] if found else None
