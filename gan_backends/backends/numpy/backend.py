"""The float64 NumPy reference: forward, backward and the optimisers written from the math.

It imports no framework and shares no code with the framework backends beyond the spec, the
loss formulas (evaluated here in float64) and the canonical tree. The backward pass is reverse
mode written by hand, layer by layer, and so are the gradient penalties' second-order
parameter gradients; ``tests/test_reference.py`` and ``tests/test_reference_conv.py`` hold them
against central finite differences, and the convolutions against direct loops. It always
computes in float64, whatever ``spec.numerics.dtype`` says (so ``matmul_precision`` does not
apply here). Semantics: ``docs/conv-gans.md``.

The package's modules: ``layers`` (the per-layer math), ``network`` (a spec network run through
it), ``optim`` (the optimisers); this module holds :class:`NumpyReference`, the
:class:`~gan_backends.backends.base.Backend` built from them, and the hand-derived derivatives
of the loss terms and of the penalties that its backward starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...losses import NUMPY_OPS, PENALTY_SITES, discriminator_loss, generator_loss, gradient_penalty
from ...params import ParamTree, buffer_shapes, check_buffers, init_buffers, split_tree
from ...spec import GANSpec
from ..base import Backend, EmaState, OptimizerState, TrainBatch, check_ema
from . import MANIFEST
from .ema import NumpyEma
from .layers import F64
from .loss_grads import d_logit_grads, g_logit_grad, penalty_grad_wrt_g
from .network import Network
from .optim import Optimizer, make_optimizer


class NumpyReference(Backend):
    """Float64 ground truth. Modes: ``float64`` only."""

    loss_ops = NUMPY_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return np.asarray(array)

    name = MANIFEST.name
    modes = ("float64",)
    host_only = True

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy reference runs on the CPU only, not {device!r}")
        self.g_net = Network(spec, "generator")
        self.d_net = Network(spec, "discriminator")
        self.buffers: ParamTree = {k: np.array(v, dtype=F64) for k, v in init_buffers(spec).items()}
        self.set_params(params)

    @classmethod
    def framework_version(cls) -> str:
        return f"numpy {np.__version__}"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(F64)

    # -- state -----------------------------------------------------------------------------
    def set_params(self, params: ParamTree) -> None:
        self.params = {k: np.array(v, dtype=F64) for k, v in params.items()}
        parts = split_tree(self.params)
        shapes = {k: v.shape for k, v in self.params.items()}
        self.g_opt = make_optimizer(self.spec.g_optimizer, list(parts["generator"]), shapes)
        self.d_opt = make_optimizer(self.spec.d_optimizer, list(parts["discriminator"]), shapes)
        self.ema = None if self.spec.ema is None else NumpyEma(self.spec.ema, self.params)

    def get_ema(self) -> EmaState | None:
        return None if self.ema is None else self.ema.get()

    def set_ema(self, state: EmaState) -> None:
        check_ema(self.spec, state)
        self.ema.set(state)

    def get_params(self) -> ParamTree:
        return {k: v.copy() for k, v in self.params.items()}

    def get_buffers(self) -> ParamTree:
        return {k: v.copy() for k, v in self.buffers.items()}

    def set_buffers(self, buffers: ParamTree) -> None:
        check_buffers(self.spec, buffers)
        self.buffers = {k: np.array(buffers[k], dtype=F64) for k in buffer_shapes(self.spec)}

    def _optimizers(self) -> dict[str, Optimizer]:
        return {"generator": self.g_opt, "discriminator": self.d_opt}

    def get_optimizer_state(self) -> OptimizerState:
        slots: dict[str, ParamTree] = {}
        for opt in self._optimizers().values():
            for slot, tree in opt.slots.items():
                slots.setdefault(slot, {}).update({k: v.copy() for k, v in tree.items()})
        return OptimizerState({net: opt.t for net, opt in self._optimizers().items()}, slots)

    def set_optimizer_state(self, state: OptimizerState) -> None:
        for net, opt in self._optimizers().items():
            opt.t = int(state.steps[net])
            for slot, tree in opt.slots.items():
                opt.slots[slot] = {k: np.array(state.slots[slot][k], dtype=F64) for k in tree}

    # -- network calls ---------------------------------------------------------------------
    def _tree(self) -> ParamTree:
        return {**self.params, **self.buffers}

    def _call(self, network: Network, x: np.ndarray, update: bool) -> tuple[np.ndarray, list[Any]]:
        """A training-mode call; ``update``: it counts as one of train_step's calls and moves
        the running statistics (docs/conv-gans.md)."""
        y, caches = network.forward(self._tree(), x, training=True)
        if update:
            network.update_buffers(self.buffers, caches)
        return y, caches

    def activations(self, net: str, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        network = self.g_net if net == "generator" else self.d_net
        return network.activations(self._tree(), self._as_input(x), training=training)

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self.g_net.forward(self._tree(), self._as_input(z))[0]

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return self.d_net.forward(self._tree(), self._as_input(x))[0]

    # -- losses and gradients --------------------------------------------------------------
    def _check_penalty_differentiable(self) -> None:
        bad = self.d_net.not_piecewise_linear() if self.spec.loss.penalty != "none" else None
        if bad is not None:
            where, layer = bad
            raise NotImplementedError(
                f"numpy reference: the {self.spec.loss.penalty} penalty's parameter gradient is written for critics "
                f"that are piecewise linear in their input; {where} {layer.describe()} is not"
            )

    def _penalty(
        self,
        real: np.ndarray,
        fake: np.ndarray,
        alpha: np.ndarray | None,
        caches: dict[str, list[Any]],
        *,
        grads: bool,
        update: bool,
    ) -> tuple[float, ParamTree]:
        """The penalty value and (``grads``) its exact gradient w.r.t. D's parameters; ``fake``
        is a constant here. ``caches``: the calls ``D(real)`` and ``D(fake)`` already made, which
        R1 and R2 take their input gradients through."""
        loss = self.spec.loss
        if loss.penalty == "none":
            return 0.0, {}
        tree = self._tree()
        sq_norms, p_grads = [], {}
        for site in PENALTY_SITES[loss.penalty]:
            if site == "interpolates":
                a = alpha.reshape(-1, *([1] * (real.ndim - 1)))
                _, cache = self._call(self.d_net, a * real + (1.0 - a) * fake, update)
            else:
                cache = caches[site]
            deltas: list[Any] = [None] * len(self.d_net.layers)
            ones = np.ones((real.shape[0], *self.spec.layer_shapes("discriminator")[-1][1]), F64)
            g, _ = self.d_net.backward(tree, cache, ones, deltas)
            sq_norms.append((g * g).reshape(g.shape[0], -1).sum(axis=1))
            if grads:
                site_grads = self.d_net.penalty_param_grads(tree, cache, deltas, penalty_grad_wrt_g(g, loss))
                p_grads = {k: p_grads.get(k, 0.0) + v for k, v in site_grads.items()}
        value = gradient_penalty(NUMPY_OPS, sq_norms[0], loss, *sq_norms[1:])
        return float(value), p_grads

    def _d_grads(
        self, real: np.ndarray, fake: np.ndarray, alpha: np.ndarray | None, update: bool
    ) -> tuple[dict[str, float], ParamTree, np.ndarray, list[Any], np.ndarray]:
        """One D update's terms and gradient (``fake`` given: G's call is the caller's); also
        ``D(fake)``'s logits and caches, which the G gradient can reuse, and ``D(real)``'s logits."""
        tree = self._tree()
        real_logits, real_cache = self._call(self.d_net, real, update)
        fake_logits, fake_cache = self._call(self.d_net, fake, update)
        caches = {"real": real_cache, "fake": fake_cache}
        penalty, p_grads = self._penalty(real, fake, alpha, caches, grads=True, update=update)
        loss = self.spec.loss
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, loss, penalty)
        d_real_logits, d_fake_logits = d_logit_grads(loss, real_logits, fake_logits)
        _, g_real = self.d_net.backward(tree, real_cache, d_real_logits)
        _, g_fake = self.d_net.backward(tree, fake_cache, d_fake_logits)
        grads = {k: g_real[k] + g_fake[k] + (p_grads[k] if k in p_grads else 0.0) for k in g_real}
        return {k: float(v) for k, v in terms.items()}, grads, fake_logits, fake_cache, real_logits

    def _g_grads(
        self, g_cache: list[Any], logits: np.ndarray, d_cache: list[Any], real_logits: np.ndarray | None
    ) -> tuple[float, ParamTree]:
        """G's loss and gradient from the calls ``fake = G(z)`` (``g_cache``) and ``D(fake)``;
        ``real_logits`` (D on the real batch) for the relativistic losses, a constant for G."""
        tree = self._tree()
        g_loss = generator_loss(NUMPY_OPS, logits, self.spec.loss, real_logits)
        d_logits = g_logit_grad(self.spec.loss, logits, real_logits)
        d_fake, _ = self.d_net.backward(tree, d_cache, d_logits)
        _, grads = self.g_net.backward(tree, g_cache, d_fake)
        return float(g_loss), grads

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        """Forward only (plus the input gradient a penalty needs): finite-difference tests of
        the backward pass rely on this. Running statistics are left alone."""
        real, z = self._as_input(real), self._as_input(z)
        alpha = self.checked_alpha(alpha, real.shape[0])
        fake, _ = self._call(self.g_net, z, False)
        real_logits, real_cache = self._call(self.d_net, real, False)
        fake_logits, fake_cache = self._call(self.d_net, fake, False)
        caches = {"real": real_cache, "fake": fake_cache}
        penalty, _ = self._penalty(real, fake, alpha, caches, grads=False, update=False)
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, self.spec.loss, penalty)
        terms["g_loss"] = generator_loss(NUMPY_OPS, fake_logits, self.spec.loss, real_logits)
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        self._check_penalty_differentiable()
        real, z = self._as_input(real), self._as_input(z)
        alpha = self.checked_alpha(alpha, real.shape[0])
        fake, g_cache = self._call(self.g_net, z, False)
        terms, d_grads, fake_logits, fake_cache, real_logits = self._d_grads(real, fake, alpha, False)
        # At fixed parameters D(real) of G's loss is the D update's call.
        terms["g_loss"], g_grads = self._g_grads(g_cache, fake_logits, fake_cache, real_logits)
        grads = {**g_grads, **d_grads}
        return terms, {name: grads[name] for name in self.params}

    def _clip(self) -> None:
        c = self.spec.loss.clip_value
        if c is not None:
            for name in self.d_opt.names:
                self.params[name] = np.clip(self.params[name], -c, c)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """The documented order: per D update ``G(z_d[i])``, ``D(real[i])``, ``D(fake)``, the
        penalty's call, the D step, clipping; then ``G(z_g)``, (relativistic losses only)
        ``D(real[-1])`` with the updated D, ``D(G(z_g))``, the G step. Each call updates its
        BatchNorm running statistics once."""
        batch.validate(self.spec)
        self._check_penalty_differentiable()
        terms: dict[str, float] = {}
        for i in range(self.spec.n_critic):
            real = self._as_input(batch.real[i])
            alpha = self.checked_alpha(None if batch.alpha is None else batch.alpha[i], real.shape[0])
            fake, _ = self._call(self.g_net, self._as_input(batch.z_d[i]), True)
            terms, d_grads, *_ = self._d_grads(real, fake, alpha, True)
            self.d_opt.update(self.params, d_grads)
            self._clip()
        fake, g_cache = self._call(self.g_net, self._as_input(batch.z_g), True)
        real_logits = None
        if self.spec.loss.relativistic:  # the last D update's real batch, through the updated D
            real_logits, _ = self._call(self.d_net, self._as_input(batch.real[-1]), True)
        logits, d_cache = self._call(self.d_net, fake, True)
        terms["g_loss"], g_grads = self._g_grads(g_cache, logits, d_cache, real_logits)
        self.g_opt.update(self.params, g_grads)
        if self.ema is not None:
            self.ema.update(self.params)
        return terms

    def device_step(self, batch: TrainBatch) -> Callable[[], dict[str, float]]:
        batch.validate(self.spec)
        return lambda: self.train_step(batch)

    def synchronize(self, outputs: Any) -> None:
        return None  # NumPy computes on the host, synchronously
