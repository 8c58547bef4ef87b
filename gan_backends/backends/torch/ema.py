"""G's moving average in torch: the spec's ``ē ← ē + w_t·(θ - ē)`` as ``Tensor.lerp_``, the op
``torch.optim.swa_utils.get_ema_multi_avg_fn`` uses (``_foreach_lerp_(ema, θ, 1 - decay)``).

``AveragedModel`` itself is not used: its ``update_parameters`` branches in Python on
``n_averaged == 0`` (a device-to-host read) and always copies at its first update, so it can
be neither captured in a CUDA graph nor set to ``start_step`` 0. Here the step count is a
device tensor and ``w_t`` is computed from it with tensor ops, so the update is part of what
the ``cuda-graph`` mode captures and replays, with no host synchronisation in the step.
"""

from __future__ import annotations

import numpy as np
import torch

from ...spec import EmaSpec
from ..base import EmaState
from .layers import canonical_tree, copy_canonical


class TorchEma:
    """The average (tensors in torch's layouts, the parameters' dtype and device, keyed by
    canonical name) and its count of G updates, an int64 device tensor."""

    def __init__(self, spec: EmaSpec, params: dict[str, torch.Tensor]):
        self.spec = spec
        self.params = params  # canonical name -> G's live parameter
        self.average = {name: p.detach().clone() for name, p in params.items()}
        first = next(iter(params.values()))
        self.count = torch.zeros((), dtype=torch.int64, device=first.device)

    def tensors(self) -> list[torch.Tensor]:
        """What a training step updates in place: the average and the count (a CUDA-graph
        capture puts them back after its warm-up)."""
        return [*self.average.values(), self.count]

    @torch.no_grad()
    def reset(self) -> None:
        """A fresh average: a copy of G's parameters, step 0 (in place: a captured graph keeps
        reading these tensors)."""
        for name, avg in self.average.items():
            avg.copy_(self.params[name])
        self.count.zero_()

    def _weight(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``w_t`` of :class:`~gan_backends.spec.ema.EmaSpec` from the device count ``t``."""
        s = self.spec.start_step
        if self.spec.debias:
            k = (t - s).clamp(min=1).to(dtype)
            decay = torch.full((), self.spec.decay, dtype=dtype, device=t.device)
            w = (1.0 - self.spec.decay) / (1.0 - torch.pow(decay, k))
        else:
            w = torch.full((), 1.0 - self.spec.decay, dtype=dtype, device=t.device)
        return torch.where(t <= s, torch.ones((), dtype=dtype, device=t.device), w)

    @torch.no_grad()
    def update(self) -> None:
        """After one G update: count it, then lerp every averaged tensor toward G's (lerp with
        weight 1 returns ``end`` exactly: ``end - (end - start)·0``, so the copy is exact)."""
        self.count.add_(1)
        w = self._weight(self.count, next(iter(self.average.values())).dtype)
        for name, avg in self.average.items():
            avg.lerp_(self.params[name], w)

    def get(self) -> EmaState:
        return EmaState(int(self.count), canonical_tree(self.average))

    def set(self, state: EmaState, dtype: np.dtype) -> None:
        """Copy ``state`` in, in place (a captured graph keeps reading these tensors)."""
        copy_canonical(self.average, state.params, dtype)
        self.count.fill_(int(state.steps))
