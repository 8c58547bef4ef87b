"""PyTorch backend: ``nn.Sequential`` networks, ``torch.optim`` optimisers, the tutorial training loop.

Layouts: ``nn.Linear`` stores its weight ``(out, in)``; the canonical kernel is ``(in, out)``,
so the weight is the kernel transposed at the boundary. ``nn.Conv2d`` stores OIHW, canonical is
HWIO; ``nn.ConvTranspose2d`` stores ``(in, out, kh, kw)``, canonical is ``(kh, kw, out, in)``:
both are ``kernel.transpose(3, 2, 0, 1)``. BatchNorm's ``weight`` is the canonical ``scale``.
Images are NCHW inside torch and NHWC (canonical) outside: permuted at the network's input and
output, at a ``Reshape`` to an image and at a ``Flatten`` of an image. The ``nn.Sequential``
index of every layer equals its index in the spec, so ``state_dict`` keys (``0.weight``,
``3.running_mean``) line up with canonical names (``generator.0.kernel``,
``generator.3.running_mean``).

Modes: ``eager`` (default); ``compile`` (``torch.compile`` of both networks); and two that
remove kernel-launch overhead on a GPU: ``compile-cudagraphs`` (``torch.compile(mode=
"reduce-overhead")``: Inductor's CUDA-graph trees replay each compiled network) and
``cuda-graph`` (the whole training step, both updates and both optimisers, captured once with
``torch.cuda.graph`` over static input buffers and replayed). Both need a CUDA device: on any
other the constructor raises :class:`~gan_backends.backends.base.ModeUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import LossOps, discriminator_loss, generator_loss, gradient_penalty
from ..params import ParamTree, buffer_shapes
from ..spec import (
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    Layer,
    LeakyReLU,
    OptimizerSpec,
    ReLU,
    Reshape,
    RMSpropSpec,
    Sigmoid,
    Tanh,
    optimizer_slots,
)
from .base import Backend, ModeUnavailable, OptimizerState, TrainBatch

Shape = tuple[int, ...]


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # F.softplus returns x itself past threshold=20 (2e-9 off); logaddexp is exact and
    # its gradient is sigmoid(x) everywhere, 0 included.
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


TORCH_OPS = LossOps(softplus=_softplus, mean=torch.mean, relu=torch.relu, sqrt=torch.sqrt)

# What a port written with torch's usual BCE gets: nn.BCELoss on sigmoid probabilities (the
# PyTorch DCGAN tutorial), whose log is clamped at -100. softplus(l) = -log(1 - sigmoid(l)).
TORCH_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -torch.clamp(torch.log(1 - torch.sigmoid(x)), min=-100.0),
    mean=torch.mean,
    relu=torch.relu,
    sqrt=torch.sqrt,
)


# -- layouts ---------------------------------------------------------------------------------


def is_image(shape: Shape) -> bool:
    """A 3-D per-sample shape is an image: ``(H, W, C)`` canonically, ``(C, H, W)`` in torch."""
    return len(shape) == 3


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    # contiguous: every conv then sees the standard NCHW memory format, so the algorithm (and
    # its rounding) does not depend on where the tensor came from.
    return x.permute(0, 3, 1, 2).contiguous()


def nchw_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


# -- layers ----------------------------------------------------------------------------------


class Unflatten(nn.Module):
    """Reshape each sample to ``shape``, row-major over the canonical channels-last order: an
    image input is taken back to NHWC first, an image output is handed on as NCHW."""

    def __init__(self, shape: Shape, in_image: bool = False):
        super().__init__()
        self.shape = tuple(shape)
        self.in_image = in_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_image:
            x = nchw_to_nhwc(x)
        x = x.reshape(x.shape[0], *self.shape)
        return nhwc_to_nchw(x) if is_image(self.shape) else x

    def extra_repr(self) -> str:
        return f"shape={self.shape}, in_image={self.in_image}"


class FlattenImage(nn.Module):
    """Flatten an NCHW image in the canonical ``(H, W, C)`` order (``nn.Flatten`` would give
    ``(C, H, W)``, the classic porting bug of a discriminator's last Linear)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nchw_to_nhwc(x).reshape(x.shape[0], -1)


class BF16Linear(nn.Linear):
    """``nn.Linear`` with the spec's bf16 matmul: operands and product in bfloat16, bias in
    float32 (see :class:`~gan_backends.spec.Numerics`). Same parameters, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.bfloat16() @ self.weight.bfloat16().T).to(x.dtype)
        return y if self.bias is None else y + self.bias


def _bf16_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to bfloat16, kept in its dtype; the backward rounds the gradient the same
    way, as the native bfloat16 path does."""
    return x.bfloat16().to(x.dtype)


def _add_channel_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias.view(1, -1, 1, 1)


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) after an explicit, possibly asymmetric, zero padding
    ``(left, right, top, bottom)``: TensorFlow's 'same' with stride > 1 pads the odd pixel at the
    bottom/right only, which torch's ``padding=`` cannot express. With ``bf16`` the operands and
    the product are bfloat16, the bias float32."""

    def __init__(self, *args, pads: tuple[int, int, int, int], bf16: bool = False, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.pads = pads
        self.bf16 = bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        if not self.bf16:
            return self._conv_forward(x, self.weight, self.bias)
        y = F.conv2d(x.bfloat16(), self.weight.bfloat16(), None, self.stride).to(x.dtype)
        return _add_channel_bias(y, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}, bf16={self.bf16}"


class CroppedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters) computing the full output (padding 0), then
    cropping ``(left, right, top, bottom)`` from it (a negative amount appends zero rows, as
    torch's ``output_padding`` does), then adding the bias everywhere. Used where torch's
    ``padding``/``output_padding`` cannot express the crop (TF 'same' with odd ``k - s`` crops one
    pixel more at the end than at the start) and for bf16."""

    def __init__(self, *args, crops: tuple[int, int, int, int], bf16: bool = False, **kwargs):
        super().__init__(*args, padding=0, output_padding=0, **kwargs)
        self.crops = crops
        self.bf16 = bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w = self.weight
        if not self.bf16:
            y = F.conv_transpose2d(x, w, None, self.stride)
        elif x.is_cuda:  # cuDNN accumulates bf16 convs in float32 (not yet measured on a GPU here)
            y = F.conv_transpose2d(x.bfloat16(), w.bfloat16(), None, self.stride).to(x.dtype)
        else:
            # The CPU kernel scatters overlapping windows in bfloat16 (col2im), rounding every
            # partial sum (3.7e-3 off the spec). The operands' products are exact in float32, so
            # a float32 transposed conv of the rounded operands, rounded once, is the spec.
            y = F.conv_transpose2d(_bf16_values(x), _bf16_values(w), None, self.stride)
            y = y.bfloat16().to(x.dtype)
        if any(self.crops):
            y = F.pad(y, tuple(-c for c in self.crops))  # negative F.pad crops, positive pads zeros
        return _add_channel_bias(y, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, crops={self.crops}, bf16={self.bf16}"


class BiasedRunningVar:
    """Mixin for torch BatchNorm: the running variance tracks the biased batch variance (Keras,
    Flax) instead of torch's ``n/(n-1)`` one. Normalisation, parameters, buffers and state_dict
    are torch's; only the training-mode running update is written out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        # Batch statistics without touching the buffers (running stats None), as torch does.
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            dims = [d for d in range(x.ndim) if d != 1]
            h = x.detach()
            mean = h.mean(dims, keepdim=True)
            var = (h - mean).square().mean(dims)  # two-pass, biased (1/n)
            m = self.momentum
            self.running_mean.mul_(1.0 - m).add_(mean.flatten(), alpha=m)
            self.running_var.mul_(1.0 - m).add_(var, alpha=m)
            self.num_batches_tracked.add_(1)
        return y


class ChannelsLast:
    """Mixin for ``nn.BatchNorm1d`` on per-sample shapes ``(..., C)`` that are neither flat nor
    images (kept canonical in torch): moved to ``(N, C, L)`` and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[-1]
        y = super().forward(x.reshape(n, -1, c).transpose(1, 2))  # type: ignore[misc]
        return y.transpose(1, 2).reshape(x.shape)


class BiasedBatchNorm1d(BiasedRunningVar, nn.BatchNorm1d):
    pass


class BiasedBatchNorm2d(BiasedRunningVar, nn.BatchNorm2d):
    pass


class ChannelsLastBatchNorm(ChannelsLast, nn.BatchNorm1d):
    pass


class ChannelsLastBiasedBatchNorm(ChannelsLast, BiasedRunningVar, nn.BatchNorm1d):
    pass


def build_batchnorm(layer: BatchNorm, in_shape: Shape) -> nn.Module:
    """torch's own BatchNorm1d/2d where the spec is torch's convention (momentum = weight of the
    new statistic, unbiased running variance); the biased variance by a mixin."""
    biased = layer.running_var == "biased"
    if len(in_shape) == 1:
        cls = BiasedBatchNorm1d if biased else nn.BatchNorm1d
    elif is_image(in_shape):
        cls = BiasedBatchNorm2d if biased else nn.BatchNorm2d
    else:
        cls = ChannelsLastBiasedBatchNorm if biased else ChannelsLastBatchNorm
    return cls(in_shape[-1], eps=layer.eps, momentum=layer.momentum)


def build_conv(layer: Conv2D, in_shape: Shape, bf16: bool) -> nn.Module:
    (top, bottom), (left, right) = layer.pads(in_shape)
    args = (in_shape[2], layer.filters, layer.kernel, layer.stride)
    if top == bottom and left == right and not bf16:
        return nn.Conv2d(*args, padding=(top, left), bias=layer.use_bias)
    return PaddedConv2d(*args, pads=(left, right, top, bottom), bf16=bf16, bias=layer.use_bias)


def build_conv_transpose(layer: ConvTranspose2D, in_shape: Shape, bf16: bool) -> nn.Module:
    (top, bottom), (left, right) = layer.crops(in_shape)
    args = (in_shape[2], layer.filters, layer.kernel, layer.stride)
    # torch keeps rows [p, full - p + output_padding): top = p, bottom = p - output_padding.
    out_pad = (top - bottom, left - right)
    if not bf16 and all(0 <= op < layer.stride for op in out_pad):
        return nn.ConvTranspose2d(*args, padding=(top, left), output_padding=out_pad, bias=layer.use_bias)
    return CroppedConvTranspose2d(*args, crops=(left, right, top, bottom), bf16=bf16, bias=layer.use_bias)


def build_layer(layer: Layer, in_shape: Shape, bf16: bool = False) -> nn.Module:
    if isinstance(layer, Dense):
        return (BF16Linear if bf16 else nn.Linear)(in_shape[0], layer.units, bias=layer.use_bias)
    if isinstance(layer, Conv2D):
        return build_conv(layer, in_shape, bf16)
    if isinstance(layer, ConvTranspose2D):
        return build_conv_transpose(layer, in_shape, bf16)
    if isinstance(layer, BatchNorm):
        return build_batchnorm(layer, in_shape)
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(negative_slope=layer.slope)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, Reshape):
        return Unflatten(layer.shape, in_image=is_image(in_shape))
    if isinstance(layer, Flatten):
        return FlattenImage() if is_image(in_shape) else nn.Flatten()
    raise NotImplementedError(f"torch backend cannot build {layer.describe()}")


def build_network(spec: GANSpec, net: str) -> nn.Sequential:
    bf16 = spec.numerics.matmul_precision == "bf16"
    return nn.Sequential(
        *(build_layer(layer, s[0], bf16) for layer, s in zip(spec.layers(net), spec.layer_shapes(net)))
    )


class CanonicalIO(nn.Module):
    """A network with canonical NHWC images at its input and output (NCHW inside). Holds the
    ``nn.Sequential`` whose ``state_dict`` is the user-facing one."""

    def __init__(self, net: nn.Sequential, in_image: bool, out_image: bool):
        super().__init__()
        self.net = net
        self.in_image, self.out_image = in_image, out_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(nhwc_to_nchw(x) if self.in_image else x)
        return nchw_to_nhwc(y) if self.out_image else y


def to_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Canonical array -> torch layout: Linear weight = kernel.T; Conv2d weight (OIHW) = HWIO
    kernel, ConvTranspose2d weight ``(in, out, kh, kw)`` = ``(kh, kw, out, in)`` kernel, both
    ``transpose(3, 2, 0, 1)``."""
    if not name.endswith(".kernel"):
        return value
    return value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)


def from_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Torch layout -> canonical (the inverse of :func:`to_torch_layout`)."""
    if not name.endswith(".kernel"):
        return value
    return value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0)


# -- optimisers ------------------------------------------------------------------------------

#: Canonical slot -> torch optimiser state key, per optimiser.
TORCH_SLOTS: dict[str, dict[str, str]] = {
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "rmsprop": {"v": "square_avg", "grad_avg": "grad_avg", "momentum": "momentum_buffer"},
    "sgd": {"momentum": "momentum_buffer"},
}


def make_optimizer(params: list[nn.Parameter], opt: OptimizerSpec, capturable: bool = False) -> torch.optim.Optimizer:
    """torch's own optimiser with every hyper-parameter from the spec. ``capturable``: safe to
    capture in a CUDA graph (the step count lives on the device and is never read on the host)."""
    # fused=True (Adam, SGD): one kernel for all parameters; same update as the for-loop form
    # within rounding, and the fastest on both CPU and CUDA (see shared performance notes).
    # Fused Adam keeps its step on the device anyway and runs the same kernel with or without
    # capturable=True (the flag then only passes optimizer.step's capture check), so a captured
    # step updates exactly as the eager one. RMSprop has no fused kernel; torch picks foreach on
    # CUDA. SGD keeps no step count and needs no flag.
    if isinstance(opt, AdamSpec):
        return torch.optim.Adam(
            params,
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            fused=True,
            capturable=capturable,
        )
    if isinstance(opt, RMSpropSpec):
        return torch.optim.RMSprop(
            params,
            lr=opt.lr,
            alpha=opt.alpha,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            momentum=opt.momentum,
            centered=opt.centered,
            capturable=capturable,
        )
    return torch.optim.SGD(
        params,
        lr=opt.lr,
        momentum=opt.momentum,
        dampening=0.0,
        weight_decay=opt.weight_decay,
        nesterov=opt.nesterov,
        fused=True,
    )


#: Modes that replay CUDA graphs: they exist only on a CUDA device.
CUDA_GRAPH_MODES = ("compile-cudagraphs", "cuda-graph")
#: Eager steps run on a side stream before the ``cuda-graph`` capture, as torch's CUDA-graph
#: notes prescribe (lazy state, cuBLAS workspaces and autograd's stream bookkeeping are set up
#: outside the capture); the state they change is restored before the capture.
CUDA_GRAPH_WARMUP_STEPS = 3


# -- devices and precision -------------------------------------------------------------------


def select_device(requested: str | None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _raise_recompile_limit(limit: int = 64) -> None:
    """Dynamo keys its cache on the code object, and every ``nn.Sequential.forward`` shares one:
    G and D, grad and no-grad, D frozen or not, train or eval, float32 and float64 are each a
    variant. Past the default limit of 8, dynamo silently runs eager; raise it so ``compile``
    stays compiled."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def apply_precision(spec: GANSpec) -> None:
    """TF32 on or off for matmuls and cuDNN convs, from the spec (process-wide in torch)."""
    tf32 = spec.numerics.matmul_precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


@dataclass
class _StepGraph:
    """A captured training step: the graph, the static input tensors whose addresses it reads,
    and the loss tensors it writes."""

    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor | None, ...]
    outputs: dict[str, torch.Tensor]

    def fits(self, inputs: tuple[torch.Tensor | None, ...]) -> bool:
        shape = lambda t: None if t is None else (t.shape, t.dtype)  # noqa: E731
        return [shape(t) for t in self.inputs] == [shape(t) for t in inputs]


# -- the backend -----------------------------------------------------------------------------


class TorchBackend(Backend):
    loss_ops = TORCH_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array))

    name = "torch"
    modes = ("eager", "compile", *CUDA_GRAPH_MODES)

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        apply_precision(spec)
        self._device = select_device(device)
        if self.mode in CUDA_GRAPH_MODES and self._device.type != "cuda":
            raise ModeUnavailable(
                f"torch mode {self.mode!r}: CUDA graphs need a CUDA device; this run's device is {self._device}"
            )
        self._graph: _StepGraph | None = None  # the captured step of "cuda-graph" mode
        self._torch_dtype = getattr(torch, spec.numerics.dtype)
        # G and D are the plain nn.Sequential (state_dict keys = spec indices); the callables
        # _G/_D take and give canonical NHWC images, compiled in "compile" mode.
        self.G = build_network(spec, "generator").to(self._device, self._torch_dtype)
        self.D = build_network(spec, "discriminator").to(self._device, self._torch_dtype)
        self._G_eager = CanonicalIO(self.G, False, is_image(spec.data_shape))
        self._D_eager = CanonicalIO(self.D, is_image(spec.data_shape), False)
        self._G, self._D = self._G_eager, self._D_eager
        if self.mode in ("compile", "compile-cudagraphs"):
            _raise_recompile_limit()
            # dynamic=False: G and D share CanonicalIO.forward's code object, so dynamo would
            # take their different input shapes for a varying shape and recompile with symbolic
            # sizes, which inductor fails on for convolutions (torch 2.13: "cannot determine
            # truth value of Relational"). Shapes are fixed by the spec; one graph per shape.
            # "reduce-overhead": each compiled forward and backward is replayed as a CUDA graph.
            options = {"mode": "reduce-overhead"} if self.mode == "compile-cudagraphs" else {}
            self._G = torch.compile(self._G_eager, dynamic=False, **options)
            self._D = torch.compile(self._D_eager, dynamic=False, **options)
        self.set_params(params)

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

    @classmethod
    def default_device(cls) -> str:
        return describe_device(select_device(None))

    @property
    def device(self) -> str:
        return describe_device(self._device)

    # -- parameters ----------------------------------------------------------------------
    def _modules(self) -> tuple[tuple[str, nn.Sequential], ...]:
        return (("generator", self.G), ("discriminator", self.D))

    def _named(self) -> dict[str, nn.Parameter]:
        """Canonical name -> torch parameter."""
        out = {}
        for net, module in self._modules():
            layers = self.spec.layers(net)
            for tname, param in module.named_parameters():
                idx, attr = tname.split(".")
                short = "bias" if attr == "bias" else "scale" if isinstance(layers[int(idx)], BatchNorm) else "kernel"
                out[f"{net}.{idx}.{short}"] = param
        return out

    def _named_buffers(self) -> dict[str, torch.Tensor]:
        """Canonical name -> BatchNorm running statistic (``num_batches_tracked`` is unused)."""
        out = {}
        for net, module in self._modules():
            for tname, buf in module.named_buffers():
                idx, attr = tname.split(".")
                if attr in ("running_mean", "running_var"):
                    out[f"{net}.{idx}.{attr}"] = buf
        return out

    def set_params(self, params: ParamTree) -> None:
        named = self._named()
        with torch.no_grad():
            for name, param in named.items():
                value = np.ascontiguousarray(to_torch_layout(name, params[name]), dtype=self.dtype)
                param.copy_(torch.from_numpy(value))
        capturable = self.mode == "cuda-graph"
        self.g_opt = make_optimizer(list(self.G.parameters()), self.spec.g_optimizer, capturable)
        self.d_opt = make_optimizer(list(self.D.parameters()), self.spec.d_optimizer, capturable)
        self._graph = None  # it captured the old optimisers' state
        # torch's SGD keeps no step count; count updates here for every optimiser.
        self._steps = {"generator": 0, "discriminator": 0}

    def get_params(self) -> ParamTree:
        return self._canonical(self._named())

    def get_buffers(self) -> ParamTree:
        return self._canonical(self._named_buffers())

    def set_buffers(self, buffers: ParamTree) -> None:
        named = self._named_buffers()
        expected = buffer_shapes(self.spec)
        problems = [f"missing {n}" for n in expected if n not in buffers]
        problems += [f"unexpected buffer {n}" for n in buffers if n not in expected]
        problems += [
            f"{n}: expected shape {s}, got {tuple(buffers[n].shape)}"
            for n, s in expected.items()
            if n in buffers and tuple(buffers[n].shape) != s
        ]
        if problems:
            raise ValueError(f"buffers do not fit spec {self.spec.name!r}: " + "; ".join(problems))
        with torch.no_grad():
            for name, buf in named.items():
                buf.copy_(torch.from_numpy(np.ascontiguousarray(buffers[name], dtype=self.dtype)))

    @contextmanager
    def _buffers_kept(self) -> Iterator[None]:
        """Run training-mode calls without a trace in the running statistics: every buffer is
        restored afterwards (after the backward passes, which is why it is not done per call)."""
        saved = [(buf, buf.clone()) for _, module in self._modules() for buf in module.buffers()]
        try:
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
            keys = TORCH_SLOTS[opt_spec.name]
            for slot in optimizer_slots(opt_spec):
                tree = slots.setdefault(slot, {})
                for name in names:
                    # torch creates its buffers lazily, at the first step: zeros before.
                    state = opt.state.get(named[name], {})
                    tree[name] = state[keys[slot]] if keys[slot] in state else torch.zeros_like(named[name])
        return OptimizerState(dict(self._steps), {slot: self._canonical(tree) for slot, tree in slots.items()})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        # Through load_state_dict, torch's public path: it moves buffers to each parameter's
        # device and dtype and gives `step` the type the fused kernel wants.
        for net, (opt, opt_spec, names) in self._optimizers().items():
            saved = opt.state_dict()
            step = state.steps[net]
            keys = TORCH_SLOTS[opt_spec.name]
            per_param = {}
            if step > 0:
                for i, name in enumerate(names):
                    entry = {} if isinstance(opt, torch.optim.SGD) else {"step": torch.tensor(float(step))}
                    for slot in optimizer_slots(opt_spec):
                        value = np.ascontiguousarray(to_torch_layout(name, state.slots[slot][name]))
                        # A copy: load_state_dict keeps the tensor, which from_numpy shares
                        # with the caller's array, and the optimiser updates it in place.
                        entry[keys[slot]] = torch.from_numpy(value).clone()
                    per_param[i] = entry
            opt.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})
            self._steps[net] = int(step)
        self._graph = None  # load_state_dict put new state tensors in place of the captured ones

    @staticmethod
    def _canonical(tensors: dict[str, torch.Tensor]) -> ParamTree:
        # A copy: on the CPU, .numpy() shares memory with the live parameter or buffer, and an
        # exported tree must not change under the caller when training goes on.
        return {
            name: np.array(from_torch_layout(name, t.detach().cpu().numpy()), order="C") for name, t in tensors.items()
        }

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

    def _alpha(self, alpha: np.ndarray | None) -> torch.Tensor | None:
        if self.spec.loss.penalty != "wgan_gp":
            return None
        if alpha is None:
            raise ValueError(f"spec {self.spec.name!r} uses WGAN-GP: pass alpha, shape (batch,)")
        return self._tensor(alpha)

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None, create_graph: bool):
        """The gradient penalty at x̂ (WGAN-GP) or at the real batch (R1), with the graph kept
        when ``create_graph`` so that d_loss.backward() differentiates through ∇_x D."""
        if self.spec.loss.penalty == "wgan_gp":
            a = alpha.reshape(-1, *([1] * (real.ndim - 1)))
            x = a * real + (1 - a) * fake
        else:
            x = real
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            # torch.compile has no double backward: the penalty's D call is always the eager
            # module (same parameters; the spec forbids BatchNorm here, so no running stats).
            self.D.train(True)
            (grad,) = torch.autograd.grad(self._D_eager(x).sum(), x, create_graph=create_graph)
        sq_norms = grad.square().sum(dim=tuple(range(1, grad.ndim)))
        return gradient_penalty(self.loss_ops, sq_norms, self.spec.loss)

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

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        # D is held fixed: no weight gradients are computed for it during the G update.
        self.D.requires_grad_(False)
        try:
            return generator_loss(self.loss_ops, self._call("discriminator", fake, training=True), self.spec.loss)
        finally:
            self.D.requires_grad_(True)

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        real_t, z_t, alpha_t = self._tensor(real), self._tensor(z), self._alpha(alpha)
        with self._buffers_kept(), torch.no_grad():
            fake = self._call("generator", z_t, training=True)
            terms = self._d_terms(real_t, fake, alpha_t, create_graph=False)
            terms["g_loss"] = generator_loss(
                self.loss_ops, self._call("discriminator", fake, training=True), self.spec.loss
            )
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        real_t, z_t, alpha_t = self._tensor(real), self._tensor(z), self._alpha(alpha)
        named = self._named()
        g_names = [n for n in named if n.startswith("generator.")]
        d_names = [n for n in named if n.startswith("discriminator.")]
        with self._buffers_kept():
            fake = self._call("generator", z_t, training=True)  # once: detached for D, kept for G
            terms = self._d_terms(real_t, fake.detach(), alpha_t)
            d_grads = torch.autograd.grad(terms["d_loss"], [named[n] for n in d_names])
            terms["g_loss"] = self._g_loss(fake)
            g_grads = torch.autograd.grad(terms["g_loss"], [named[n] for n in g_names])
        grads = self._canonical(dict(zip([*g_names, *d_names], [*g_grads, *d_grads])))
        return {k: float(v.detach()) for k, v in terms.items()}, {n: grads[n] for n in named}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        return {k: float(v) for k, v in self.device_step(batch)().items()}

    def device_step(self, batch: TrainBatch):
        batch.validate(self.spec)
        inputs = self.device_inputs(batch)
        if self.mode == "cuda-graph":
            return self._graphed(inputs)
        return lambda: self._train_step(*inputs)

    # -- what a data-parallel engine builds on (gan_backends/parallel/torch_ddp.py) ------------
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
            **(self._compile_counts() if self.mode in ("compile", "compile-cudagraphs") else {}),
            **({"cuda_graph_warmup_steps": CUDA_GRAPH_WARMUP_STEPS} if self.mode == "cuda-graph" else {}),
        }

    @staticmethod
    def _compile_counts() -> dict:
        """Dynamo's own counts: graphs compiled and graph breaks (each break splits a network
        into separately compiled pieces with Python between them)."""
        counters = torch._dynamo.utils.counters
        return {
            "compiled_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            # reduce-overhead runs a compiled graph eagerly when it cannot be captured (CPU
            # tensors, mutated inputs ...): each such fallback is counted here.
            "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
        }

    def peak_device_memory(self) -> int | None:
        return torch.cuda.max_memory_allocated(self._device) if self._device.type == "cuda" else None

    def _train_step(
        self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor, alpha: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The tutorial loop: n_critic D updates on detached fakes, then one G update, every
        network call in training mode (running statistics update once per call)."""
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
        g_loss = self._g_loss(self._call("generator", z_g, training=True))
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        self._steps["generator"] += 1
        return {**{k: v.detach() for k, v in terms.items()}, "g_loss": g_loss.detach()}

    # -- the whole step as one CUDA graph ("cuda-graph" mode) ----------------------------------
    def _graphed(self, inputs: tuple[torch.Tensor | None, ...]) -> Callable[[], dict[str, torch.Tensor]]:
        """``step()`` replaying the captured training step on ``inputs``. Where a captured graph
        fits their shapes, they are copied into its static buffers once, here, and ``step()`` is
        a replay and nothing else; otherwise the first ``step()`` captures (warm-up and capture
        then count in a benchmark's first step, as compilation does), ``inputs`` becoming the
        static buffers. A graph dropped since (new parameters or optimiser state) is captured
        again on the same buffers."""
        if self._graph is not None and self._graph.fits(inputs):
            for static, value in zip(self._graph.inputs, inputs):
                if value is not None and value is not static:
                    static.copy_(value)
            inputs = self._graph.inputs

        def step() -> dict[str, torch.Tensor]:
            if self._graph is None or self._graph.inputs is not inputs:
                self._graph = self._capture(inputs)
            self._graph.graph.replay()
            self._steps["discriminator"] += self.spec.n_critic
            self._steps["generator"] += 1
            return self._graph.outputs

        return step

    def _training_state(self) -> list[torch.Tensor]:
        """Every tensor a training step updates in place: parameters, BatchNorm buffers and the
        optimisers' state (step counts, moments)."""
        tensors = [t for _, module in self._modules() for t in (*module.parameters(), *module.buffers())]
        for opt in (self.d_opt, self.g_opt):
            tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        return tensors

    def _capture(self, inputs: tuple[torch.Tensor | None, ...]) -> _StepGraph:
        """Whole-network capture as torch's CUDA-graph notes write it: warm-up steps on a side
        stream, then ``torch.cuda.graph`` around one step, whose backward passes allocate the
        gradients (set to None by ``zero_grad``) from the graph's private pool. The warm-up
        trains, so everything it changed is put back first and the first replay is the step
        an eager backend would take: parameters, buffers and existing optimiser state by value,
        optimiser state created lazily during the warm-up to zero (torch's initial Adam/RMSprop
        state; for SGD momentum ``0·m + g`` equals the first step's ``m = g``)."""
        before = {id(t): (t, t.clone()) for t in self._training_state()}
        steps = dict(self._steps)
        stream = torch.cuda.Stream(self._device)
        stream.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(stream):
            for _ in range(CUDA_GRAPH_WARMUP_STEPS):
                self._train_step(*inputs)
        torch.cuda.current_stream(self._device).wait_stream(stream)
        with torch.no_grad():
            for t in self._training_state():
                if id(t) in before and before[id(t)][0] is t:
                    t.copy_(before[id(t)][1])
                else:
                    t.zero_()
        graph = torch.cuda.CUDAGraph()
        # The warm-up's stream again: cuBLAS keeps a workspace per stream, made on first use.
        with torch.cuda.graph(graph, stream=stream):
            outputs = self._train_step(*inputs)
        self._steps = steps  # capturing ran the Python step once; nothing was computed
        return _StepGraph(graph, inputs, outputs)
