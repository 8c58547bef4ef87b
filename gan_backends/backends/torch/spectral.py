"""Spectral normalisation in torch: ``torch.nn.utils.spectral_norm``'s mechanism, written out.

:func:`apply_spectral_norm` does to a built ``nn.Linear``/``nn.Conv2d`` what torch's
``spectral_norm(module)`` does (the parameter ``weight_orig``, buffers ``weight_u`` and
``weight_v``, a forward pre-hook setting ``module.weight = weight_orig / σ``), so the module's
``state_dict`` has torch's own keys and loads into a module wrapped by torch's function, and the
same ops (``torch.mv``, ``F.normalize``) compute the same numbers. Written out rather than
called because torch's hook writes ``u``, ``v`` into the buffers in every training forward;
here :func:`frozen` lets ``loss_terms``/``gradients``/``activations`` iterate from the stored
vectors without storing the result (the spec's rule, :mod:`gan_backends.spec.spectral`).

torch's matrix is ``weight.reshape(out, -1)``: for ``Conv2d`` (OIHW) its columns run
``(in, kh, kw)``, the canonical ``sn_v`` runs ``(kh, kw, in)``; :func:`buffers_to_canonical` and
:func:`buffers_to_torch` permute ``sn_v`` at the backend's boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...params import ParamTree
from ...spec import GANSpec, walk
from ...spec.spectral import SpectralNormSpec, v_from_torch, v_to_torch

#: torch's buffer names <-> the canonical ones.
BUFFER_NAMES = {"weight_u": "sn_u", "weight_v": "sn_v"}


class SpectralNormHook:
    """The forward pre-hook: ``module.weight = weight_orig / σ`` before every call.

    Training mode: ``n_power_iterations`` of ``v = normalize(Wᵀu)``, ``u = normalize(W v)``
    under ``no_grad`` from the stored ``u`` (written back unless :attr:`frozen`); inference: the
    stored ``u``, ``v``. ``σ = u·(W v)`` with ``u``, ``v`` constants, the gradient through ``W``.
    """

    def __init__(self, sn: SpectralNormSpec):
        self.sn = sn
        self.frozen = False

    def compute_weight(self, module: nn.Module, training: bool) -> torch.Tensor:
        weight = module.weight_orig
        w = weight.reshape(weight.shape[0], -1)
        u, v = module.weight_u, module.weight_v
        if training:
            with torch.no_grad():
                for _ in range(self.sn.n_power_iterations):
                    v = F.normalize(torch.mv(w.t(), u), dim=0, eps=self.sn.eps)
                    u = F.normalize(torch.mv(w, v), dim=0, eps=self.sn.eps)
                if not self.frozen:
                    module.weight_u.copy_(u)
                    module.weight_v.copy_(v)
        # Copies: the graph must not hold the buffers a later training call writes in place.
        u, v = u.clone(), v.clone()
        return weight / torch.dot(u, torch.mv(w, v))

    def __call__(self, module: nn.Module, inputs: object) -> None:
        module.weight = self.compute_weight(module, module.training)


def apply_spectral_norm(module: nn.Module, sn: SpectralNormSpec | None) -> nn.Module:
    """``module`` (a built Linear or Conv2d) with its ``weight`` spectrally normalised, as
    ``torch.nn.utils.spectral_norm(module)`` rearranges it; unchanged when ``sn`` is None. The
    vectors start as zeros: the canonical ``sn_u``/``sn_v`` are copied in (``set_buffers``)."""
    if sn is None:
        return module
    weight = module.weight
    del module._parameters["weight"]
    module.register_parameter("weight_orig", weight)
    if "bias" in module._parameters:  # kernel before bias again: the canonical trees' (and optimiser's) order
        module._parameters["bias"] = module._parameters.pop("bias")
    module.weight = weight.data  # a plain attribute, recomputed by the hook on every call
    out, fan_in = weight.shape[0], weight[0].numel()
    module.register_buffer("weight_u", torch.zeros(out, dtype=weight.dtype))
    module.register_buffer("weight_v", torch.zeros(fan_in, dtype=weight.dtype))
    hook = SpectralNormHook(sn)
    module.register_forward_pre_hook(hook)
    module.spectral_norm_hook = hook
    return module


@contextmanager
def frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Training-mode calls inside iterate from the stored ``u``, ``v`` and store nothing."""
    hooks = [m.spectral_norm_hook for root in modules for m in root.modules() if hasattr(m, "spectral_norm_hook")]
    for hook in hooks:
        hook.frozen = True
    try:
        yield
    finally:
        for hook in hooks:
            hook.frozen = False


def _kernel_shapes(spec: GANSpec) -> dict[str, tuple[int, ...]]:
    """Canonical ``sn_v`` name -> the canonical kernel shape of its layer."""
    out = {}
    for net in ("generator", "discriminator"):
        for path, layer, in_shape in walk(spec.layers(net), spec.input_shape(net), net):  # blocks' layers too
            if getattr(layer, "spectral_norm", None) is not None:
                out[f"{path}.sn_v"] = layer.param_shapes(in_shape)["kernel"]
    return out


def buffers_to_canonical(spec: GANSpec, tree: ParamTree) -> ParamTree:
    """A tree read from the modules with torch's ``weight_v`` order -> canonical ``sn_v``."""
    shapes = _kernel_shapes(spec)
    return {k: (np.ascontiguousarray(v_from_torch(v, shapes[k])) if k in shapes else v) for k, v in tree.items()}


def buffers_to_torch(spec: GANSpec, tree: ParamTree) -> ParamTree:
    """The inverse of :func:`buffers_to_canonical`, before a canonical tree is copied in."""
    shapes = _kernel_shapes(spec)
    return {k: (np.ascontiguousarray(v_to_torch(v, shapes[k])) if k in shapes else v) for k, v in tree.items()}
