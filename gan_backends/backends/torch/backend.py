"""PyTorch backend: :class:`TorchBackend`, the tutorial training loop over the package's networks and optimisers.

The networks are :mod:`.layers`' ``nn.Sequential`` (layouts, NCHW inside, ``state_dict`` keys =
spec indices: see there), the optimisers :mod:`.optim`'s ``torch.optim`` ones; this module holds
the loop, the canonical trees at the boundary, the device and precision settings and the hooks
the data-parallel engine (:mod:`.parallel`) builds on.

Modes: ``eager`` (default); ``compile`` (``torch.compile`` of both networks); and two that
remove kernel-launch overhead on a GPU: ``compile-cudagraphs`` (``torch.compile(mode=
"reduce-overhead")``: Inductor's CUDA-graph trees replay each compiled network) and
``cuda-graph`` (the whole training step, both updates and both optimisers, captured once with
``torch.cuda.graph`` over static input buffers and replayed: :mod:`.cuda_graph`). Both need a
CUDA device: on any other the constructor raises :class:`~gan_backends.backends.base.ModeUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ...losses import PENALTY_SITES, LossOps, discriminator_loss, generator_loss, gradient_penalty
from ...params import ParamTree, check_buffers, init_buffers
from ...spec import GANSpec, OptimizerSpec
from ..base import Backend, EmaState, ModeUnavailable, OptimizerState, TrainBatch, check_ema
from . import MANIFEST, cuda_graph, spectral
from .cuda_graph import CUDA_GRAPH_MODES, CUDA_GRAPH_WARMUP_STEPS, StepGraph, StepInputs
from .device import apply_precision, describe_device, select_device
from .ema import TorchEma
from .layers import (
    CanonicalIO,
    build_network,
    canonical_buffers,
    canonical_parameters,
    canonical_tree,
    copy_canonical,
    is_image,
    nchw_to_nhwc,
    nhwc_to_nchw,
)
from .optim import load_slots, make_optimizer, slot_tensors


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # F.softplus returns x itself past threshold=20 (2e-9 off); logaddexp is exact and
    # its gradient is sigmoid(x) everywhere, 0 included.
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


TORCH_OPS = LossOps(softplus=_softplus, mean=torch.mean, relu=torch.relu, sqrt=torch.sqrt, sum=torch.sum)

# What a port written with torch's usual BCE gets: nn.BCELoss on sigmoid probabilities (the
# PyTorch DCGAN tutorial), whose log is clamped at -100. softplus(l) = -log(1 - sigmoid(l)).
TORCH_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -torch.clamp(torch.log(1 - torch.sigmoid(x)), min=-100.0),
    mean=torch.mean,
    relu=torch.relu,
    sqrt=torch.sqrt,
    sum=torch.sum,
)


# -- the backend -----------------------------------------------------------------------------


class TorchBackend(Backend):
    loss_ops = TORCH_OPS
    select_device = staticmethod(select_device)
    describe_device = staticmethod(describe_device)

    @staticmethod
    def from_numpy(array: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array))

    name = MANIFEST.name
    modes = ("eager", "compile", *CUDA_GRAPH_MODES)  # what this class implements; the manifest must say the same

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        apply_precision(spec)
        self._device = select_device(device)
        needs_cuda = MANIFEST.cuda_only_modes.get(self.mode)
        if needs_cuda and self._device.type != "cuda":
            raise ModeUnavailable(f"torch mode {self.mode!r}: {needs_cuda}; this run's device is {self._device}")
        self._graphed = cuda_graph.GraphedStep()  # the captured step of "cuda-graph" mode
        self._torch_dtype = getattr(torch, spec.numerics.dtype)
        # G and D are the plain nn.Sequential (state_dict keys = spec indices); the callables
        # _G/_D take and give canonical NHWC images, compiled in "compile" mode.
        self.G = build_network(spec, "generator").to(self._device, self._torch_dtype)
        self.D = build_network(spec, "discriminator").to(self._device, self._torch_dtype)
        self._G_eager = CanonicalIO(self.G, False, is_image(spec.data_shape))
        # A PatchGAN D's (H, W, 1) logit map comes back NHWC, as every backend gives it.
        d_out = spec.layer_shapes("discriminator")[-1][1]
        self._D_eager = CanonicalIO(self.D, is_image(spec.data_shape), is_image(d_out))
        self._G, self._D = self._G_eager, self._D_eager
        if self.mode in cuda_graph.COMPILE_MODES:
            self._G, self._D = cuda_graph.compile_networks(self._G_eager, self._D_eager, self.mode)
        self.set_params(params)
        self.set_buffers(init_buffers(spec))  # torch's own BatchNorm start; spectral norm's u, v

    @classmethod
    def configure_threads(cls, threads: int) -> dict[str, int]:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # fixed once parallel work has started in this process
            pass
        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}

    @classmethod
    def framework_version(cls) -> str:
        return f"torch {torch.__version__}"

    # -- parameters ----------------------------------------------------------------------
    def _modules(self) -> tuple[tuple[str, nn.Sequential], ...]:
        return (("generator", self.G), ("discriminator", self.D))

    def _named(self) -> dict[str, nn.Parameter]:
        """Canonical name -> torch parameter."""
        return {
            k: v for net, module in self._modules() for k, v in canonical_parameters(self.spec, net, module).items()
        }

    def _named_buffers(self) -> dict[str, torch.Tensor]:
        """Canonical name -> BatchNorm running statistic."""
        return {k: v for net, module in self._modules() for k, v in canonical_buffers(net, module).items()}

    def set_params(self, params: ParamTree) -> None:
        named = self._named()
        copy_canonical(named, params, self.dtype)
        capturable = self.mode == "cuda-graph"
        self.g_opt = make_optimizer(list(self.G.parameters()), self.spec.g_optimizer, capturable)
        self.d_opt = make_optimizer(list(self.D.parameters()), self.spec.d_optimizer, capturable)
        self._graphed.drop()  # it captured the old optimisers' state
        # torch's SGD keeps no step count; count updates here for every optimiser.
        self._steps = {"generator": 0, "discriminator": 0}
        g_named = {n: p for n, p in named.items() if n.startswith("generator.")}
        self._ema = None if self.spec.ema is None else TorchEma(self.spec.ema, g_named)

    def get_ema(self) -> EmaState | None:
        return None if self._ema is None else self._ema.get()

    def set_ema(self, state: EmaState) -> None:
        check_ema(self.spec, state)
        self._ema.set(state, self.dtype)

    def get_params(self) -> ParamTree:
        return canonical_tree(self._named())

    def get_buffers(self) -> ParamTree:
        return spectral.buffers_to_canonical(self.spec, canonical_tree(self._named_buffers()))

    def set_buffers(self, buffers: ParamTree) -> None:
        check_buffers(self.spec, buffers)
        copy_canonical(self._named_buffers(), spectral.buffers_to_torch(self.spec, buffers), self.dtype)

    @contextmanager
    def _buffers_kept(self) -> Iterator[None]:
        """Run training-mode calls without a trace in the running statistics: every buffer is
        restored afterwards (after the backward passes, which is why it is not done per call),
        and spectral norm's power iterations start from the stored vectors in every call."""
        saved = [(buf, buf.clone()) for _, module in self._modules() for buf in module.buffers()]
        try:
            # Spectral norm's vectors are read by the next call: frozen, not only restored.
            with spectral.frozen(module for _, module in self._modules()):
                yield
        finally:
            with torch.no_grad():
                for buf, value in saved:
                    buf.copy_(value)

    def _optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, OptimizerSpec, list[str]]]:
        """Network -> (its optimiser, its spec, canonical names in the optimiser's parameter order)."""
        names = list(self._named())
        return {
            net: (opt, opt_spec, [n for n in names if n.startswith(net + ".")])
            for net, opt, opt_spec in (
                ("generator", self.g_opt, self.spec.g_optimizer),
                ("discriminator", self.d_opt, self.spec.d_optimizer),
            )
        }

    def get_optimizer_state(self) -> OptimizerState:
        named = self._named()
        slots: dict[str, dict[str, torch.Tensor]] = {}
        for opt, opt_spec, names in self._optimizers().values():
            for slot, tree in slot_tensors(opt, opt_spec, {n: named[n] for n in names}).items():
                slots.setdefault(slot, {}).update(tree)
        return OptimizerState(dict(self._steps), {slot: canonical_tree(tree) for slot, tree in slots.items()})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        for net, (opt, opt_spec, names) in self._optimizers().items():
            load_slots(opt, opt_spec, names, state.steps[net], state.slots)
            self._steps[net] = int(state.steps[net])
        self._graphed.drop()  # load_state_dict put new state tensors in place of the captured ones

    # -- computation ---------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._as_input(array)).to(self._device)

    def _call(self, net: str, x: torch.Tensor, training: bool) -> torch.Tensor:
        """One network call on canonical tensors, BatchNorm in training or inference mode."""
        module, fn = (self.G, self._G) if net == "generator" else (self.D, self._D)
        if module.training != training:  # train() walks every submodule: only on a change
            module.train(training)
        return fn(x)

    @torch.no_grad()
    def activations(self, net: str, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        module = self.G if net == "generator" else self.D
        shapes = self.spec.layer_shapes(net)
        module.train(training)
        h, outputs = self._tensor(x), []
        if is_image(shapes[0][0]):
            h = nhwc_to_nchw(h)
        with self._buffers_kept():
            for layer, (_, out_shape) in zip(module, shapes):
                h = layer(h)
                outputs.append((nchw_to_nhwc(h) if is_image(out_shape) else h).cpu().numpy())
        return outputs

    @torch.no_grad()
    def generate(self, z: np.ndarray) -> np.ndarray:
        return self._call("generator", self._tensor(z), training=False).cpu().numpy()

    @torch.no_grad()
    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return self._call("discriminator", self._tensor(x), training=False).cpu().numpy()

    def _alpha(self, alpha: np.ndarray | None, batch: int) -> torch.Tensor | None:
        """WGAN-GP's α for one D update of ``batch`` rows, checked by the core (None otherwise)."""
        checked = self.checked_alpha(alpha, batch)
        return None if checked is None else self._tensor(checked)

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None, create_graph: bool):
        """The gradient penalty at x̂ (WGAN-GP), the real batch (R1), the fake batch (R2) or
        both (R1 + R2), with the graph kept when ``create_graph`` so that d_loss.backward()
        differentiates through ∇_x D."""
        sq_norms = []
        for site in PENALTY_SITES[self.spec.loss.penalty]:
            if site == "interpolates":
                a = alpha.reshape(-1, *([1] * (real.ndim - 1)))
                x = a * real + (1 - a) * fake
            else:
                x = real if site == "real" else fake
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                # torch.compile has no double backward: the penalty's D call is always the eager
                # module (same parameters; the spec forbids BatchNorm here, so no running stats).
                self.D.train(True)
                (grad,) = torch.autograd.grad(self._D_eager(x).sum(), x, create_graph=create_graph)
            sq_norms.append(grad.square().sum(dim=tuple(range(1, grad.ndim))))
        return gradient_penalty(self.loss_ops, sq_norms[0], self.spec.loss, *sq_norms[1:])

    def _d_terms(
        self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None, create_graph: bool = True
    ) -> dict[str, torch.Tensor]:
        """D's loss on a fixed fake batch: D(real), D(fake) as two calls, then the penalty."""
        l_real = self._call("discriminator", real, training=True)
        l_fake = self._call("discriminator", fake, training=True)
        if self.spec.loss.penalty == "none":
            penalty = torch.zeros((), dtype=self._torch_dtype, device=self._device)
        else:
            penalty = self._penalty(real, fake, alpha, create_graph)
        return discriminator_loss(self.loss_ops, l_real, l_fake, self.spec.loss, penalty)

    def _real_logits(self, real: torch.Tensor | None) -> torch.Tensor | None:
        """D on the real batch for a relativistic G loss (None otherwise): a training-mode call
        (its running statistics advance, as every training call's), without a graph: the real
        logits are a constant of G's update."""
        if not self.spec.loss.relativistic:
            return None
        with torch.no_grad():
            return self._call("discriminator", real, training=True)

    def _g_loss(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        # D is held fixed: no weight gradients are computed for it during the G update.
        real_logits = self._real_logits(real)  # before D(fake): the documented call order
        self.D.requires_grad_(False)
        try:
            fake_logits = self._call("discriminator", fake, training=True)
            return generator_loss(self.loss_ops, fake_logits, self.spec.loss, real_logits)
        finally:
            self.D.requires_grad_(True)

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        real_t, z_t, alpha_t = self._tensor(real), self._tensor(z), self._alpha(alpha, real.shape[0])
        with self._buffers_kept(), torch.no_grad():
            fake = self._call("generator", z_t, training=True)
            terms = self._d_terms(real_t, fake, alpha_t, create_graph=False)
            terms["g_loss"] = self._g_loss(fake, real_t)
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        real_t, z_t, alpha_t = self._tensor(real), self._tensor(z), self._alpha(alpha, real.shape[0])
        named = self._named()
        g_names = [n for n in named if n.startswith("generator.")]
        d_names = [n for n in named if n.startswith("discriminator.")]
        with self._buffers_kept():
            fake = self._call("generator", z_t, training=True)  # once: detached for D, kept for G
            terms = self._d_terms(real_t, fake.detach(), alpha_t)
            d_grads = torch.autograd.grad(terms["d_loss"], [named[n] for n in d_names])
            terms["g_loss"] = self._g_loss(fake, real_t)
            g_grads = torch.autograd.grad(terms["g_loss"], [named[n] for n in g_names])
        grads = canonical_tree(dict(zip([*g_names, *d_names], [*g_grads, *d_grads])))
        return {k: float(v.detach()) for k, v in terms.items()}, {n: grads[n] for n in named}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        return {k: float(v) for k, v in self.device_step(batch)().items()}

    def device_step(self, batch: TrainBatch):
        batch.validate(self.spec)
        inputs = self.device_inputs(batch)
        if self.mode == "cuda-graph":
            return self._graphed.step_on(inputs, self._capture, self._count_replay)
        return lambda: self._train_step(*inputs)

    # -- what a data-parallel engine builds on (gan_backends/backends/torch/parallel.py) ------------
    @property
    def torch_device(self) -> torch.device:
        return self._device

    def device_inputs(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``real``, ``z_d``, ``z_g`` and (WGAN-GP only) ``alpha`` as tensors on the device."""
        alpha = None if batch.alpha is None or self.spec.loss.penalty != "wgan_gp" else self._tensor(batch.alpha)
        return self._tensor(batch.real), self._tensor(batch.z_d), self._tensor(batch.z_g), alpha

    @property
    def canonical_networks(self) -> tuple[nn.Module, nn.Module]:
        """G and D as eager modules taking and giving canonical (NHWC) tensors, sharing the
        parameters of :attr:`G` and :attr:`D`: what DDP wraps."""
        return self._G_eager, self._D_eager

    def call_networks_through(self, generator: Callable, discriminator: Callable) -> None:
        """Make the training step call ``generator`` and ``discriminator`` (e.g. the DDP
        wrappers of :attr:`canonical_networks`) instead of its own callables."""
        self._G, self._D = generator, discriminator

    def eager_train_step(
        self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor, alpha: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """One training step on device tensors (:meth:`device_inputs`) through the networks'
        current callables; the loss terms as tensors, unread."""
        if self.mode != "eager":
            raise ValueError(f"eager_train_step is the eager step; this backend runs in mode {self.mode!r}")
        return self._train_step(real, z_d, z_g, alpha)

    def step_anatomy(self, batch: TrainBatch) -> dict:
        from .anatomy import profile_step

        return profile_step(self.device_step(batch), self.synchronize, self._device.type == "cuda")

    def synchronize(self, outputs) -> None:
        # CPU kernels run in the calling thread: when the step returns its work is done.
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def runtime_info(self) -> dict:
        return {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "optimizer_impl": "fused" if self.d_opt.defaults.get("fused") else "foreach/for-loop",
            **(cuda_graph.compile_counts() if self.mode in cuda_graph.COMPILE_MODES else {}),
            **({"cuda_graph_warmup_steps": CUDA_GRAPH_WARMUP_STEPS} if self.mode == "cuda-graph" else {}),
        }

    def peak_device_memory(self) -> int | None:
        return torch.cuda.max_memory_allocated(self._device) if self._device.type == "cuda" else None

    def _train_step(
        self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor, alpha: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The tutorial loop: n_critic D updates on detached fakes, then one G update (G(z_g),
        for a relativistic loss D(real[-1]), D(G(z_g))), every network call in training mode
        (running statistics update once per call)."""
        if self.mode == "compile-cudagraphs":
            # A new iteration for the CUDA-graph trees: outputs of the previous step's replays
            # may be overwritten from here (torch.compiler docs, training loops).
            torch.compiler.cudagraph_mark_step_begin()
        clip = self.spec.loss.clip_value
        for i in range(self.spec.n_critic):
            with torch.no_grad():
                fake = self._call("generator", z_d[i], training=True)
            terms = self._d_terms(real[i], fake, None if alpha is None else alpha[i])
            self.d_opt.zero_grad(set_to_none=True)
            terms["d_loss"].backward()
            self.d_opt.step()
            self._steps["discriminator"] += 1
            if clip is not None:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-clip, clip)
        # A relativistic G loss reads D on the last D update's real batch, through the updated D.
        g_loss = self._g_loss(self._call("generator", z_g, training=True), real[-1])
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        self._steps["generator"] += 1
        if self._ema is not None:
            self._ema.update()
        return {**{k: v.detach() for k, v in terms.items()}, "g_loss": g_loss.detach()}

    # -- the whole step as one CUDA graph ("cuda-graph" mode) ----------------------------------
    def _count_replay(self) -> None:
        self._steps["discriminator"] += self.spec.n_critic
        self._steps["generator"] += 1

    def _training_state(self) -> list[torch.Tensor]:
        """Every tensor a training step updates in place (:func:`.cuda_graph.training_state`)."""
        ema = self._ema.tensors() if self._ema is not None else []
        return cuda_graph.training_state([module for _, module in self._modules()], (self.d_opt, self.g_opt)) + ema

    def _capture(self, inputs: StepInputs) -> StepGraph:
        """The training step captured on ``inputs`` (:func:`.cuda_graph.capture`), the step counts
        left as they were: capturing ran the Python step, nothing was computed; only replays count."""
        steps = dict(self._steps)
        graph = cuda_graph.capture(self._train_step, inputs, self._training_state, self._device)
        self._steps = steps
        return graph
