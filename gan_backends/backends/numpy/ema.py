"""The reference's moving average of G's weights, in float64, written from the spec's formula
(:class:`~gan_backends.spec.ema.EmaSpec`): ``ē ← ē + w_t·(θ - ē)``, ``w_t`` from
:meth:`EmaSpec.weight <gan_backends.spec.ema.EmaSpec.weight>`."""

from __future__ import annotations

import numpy as np

from ...params import ParamTree
from ...spec import EmaSpec
from ..base import EmaState
from .layers import F64


class NumpyEma:
    """The average and its step count; :meth:`update` follows one G update."""

    def __init__(self, spec: EmaSpec, params: ParamTree):
        self.spec = spec
        self.reset(params)

    def reset(self, params: ParamTree) -> None:
        """A fresh average: a copy of G's parameters, step 0."""
        self.steps = 0
        self.average = {k: np.array(v, dtype=F64) for k, v in params.items() if k.startswith("generator.")}

    def update(self, params: ParamTree) -> None:
        """After G update ``t = steps + 1``: a copy while ``w_t`` is 1, else the lerp."""
        self.steps += 1
        w = self.spec.weight(self.steps)
        for name, avg in self.average.items():
            self.average[name] = params[name].copy() if w == 1.0 else avg + w * (params[name] - avg)

    def get(self) -> EmaState:
        return EmaState(self.steps, {k: v.copy() for k, v in self.average.items()})

    def set(self, state: EmaState) -> None:
        self.steps = int(state.steps)
        self.average = {k: np.array(state.params[k], dtype=F64) for k in self.average}
