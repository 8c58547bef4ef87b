"""The float64 NumPy reference: forward, backward and the optimisers written from the math.

It imports no framework and shares no code with the framework backends beyond the spec, the
loss formulas (evaluated here in float64) and the canonical tree. The backward pass is reverse
mode written by hand, layer by layer, and so are the gradient penalties' second-order
parameter gradients; ``tests/test_reference.py`` and ``tests/test_reference_conv.py`` hold them
against central finite differences, and the convolutions against direct loops. It always
computes in float64, whatever ``spec.numerics.dtype`` says (so ``matmul_precision`` does not
apply here). Semantics: ``docs/conv-gans.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..losses import LossOps, discriminator_loss, generator_loss, gradient_penalty
from ..params import ParamTree, buffer_shapes, init_buffers, split_tree
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
    LossSpec,
    OptimizerSpec,
    ReLU,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Sigmoid,
    Tanh,
    optimizer_slots,
)
from .base import Backend, OptimizerState, TrainBatch

F64 = np.float64
Pairs = tuple[tuple[int, int], tuple[int, int]]


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


NUMPY_OPS = LossOps(softplus=softplus, mean=np.mean, relu=lambda x: np.maximum(x, 0.0), sqrt=np.sqrt)

# Each layer: forward(layer, params, x, training=...) -> (y, cache);
# backward(layer, params, cache, dy) -> (dx, grads). ``params`` holds the layer's parameters and
# buffers by short name (``kernel``, ``running_mean``...).
Forward = Callable[..., tuple[np.ndarray, Any]]
Backward = Callable[[Any, dict[str, np.ndarray], Any, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


def _dense_fwd(layer: Dense, p, x, *, training: bool = False):
    y = x @ p["kernel"]
    if layer.use_bias:
        y = y + p["bias"]
    return y, x


def _dense_bwd(layer: Dense, p, x, dy):
    grads = {"kernel": x.T @ dy}
    if layer.use_bias:
        grads["bias"] = dy.sum(axis=0)
    return dy @ p["kernel"].T, grads


def _leaky_fwd(layer: LeakyReLU, p, x, *, training: bool = False):
    return np.where(x > 0, x, layer.slope * x), x


def _leaky_bwd(layer: LeakyReLU, p, x, dy):
    return np.where(x > 0, dy, layer.slope * dy), {}


def _relu_fwd(layer, p, x, *, training: bool = False):
    return np.maximum(x, 0.0), x


def _relu_bwd(layer, p, x, dy):
    return np.where(x > 0, dy, 0.0), {}


def _tanh_fwd(layer, p, x, *, training: bool = False):
    y = np.tanh(x)
    return y, y


def _tanh_bwd(layer, p, y, dy):
    return dy * (1.0 - y * y), {}


def _sigmoid_fwd(layer, p, x, *, training: bool = False):
    y = sigmoid(x)
    return y, y


def _sigmoid_bwd(layer, p, y, dy):
    return dy * y * (1.0 - y), {}


def _reshape_fwd(layer: Reshape | Flatten, p, x, *, training: bool = False):
    out = layer.shape if isinstance(layer, Reshape) else (-1,)
    return x.reshape(x.shape[0], *out), x.shape


def _reshape_bwd(layer, p, in_shape, dy):
    return dy.reshape(in_shape), {}


# -- convolutions ------------------------------------------------------------------------------
# One im2col formulation for everything: a VALID stride-s correlation of a (N, H, W, C) input
# with an HWIO kernel is ``im2col(x) @ kernel.reshape(k*k*C, O)``, whose rows are the k x k
# windows in (kh, kw, C) order. Its adjoint w.r.t. the input (col2im) adds every window row back
# where it came from; that is both Conv2D's input gradient and ConvTranspose2D's forward.


def _im2col(xp: np.ndarray, k: int, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The ``(N*Ho*Wo, k*k*C)`` window rows of a VALID stride-``s`` correlation of ``xp``."""
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]  # (N, Ho, Wo, C, kh, kw), a view
    n, ho, wo, c = win.shape[:4]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c), (ho, wo)


def _col2im(cols: np.ndarray, n: int, out_hw: tuple[int, int], k: int, s: int, size_hw: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`_im2col`: ``(N*Ho*Wo, k*k*C)`` rows summed into an ``(N, *size_hw, C)`` image."""
    ho, wo = out_hw
    c = cols.shape[1] // (k * k)
    cols = cols.reshape(n, ho, wo, k, k, c)
    out = np.zeros((n, *size_hw, c), F64)
    for i in range(k):
        for j in range(k):
            out[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += cols[:, :, :, i, j]
    return out


def _pad(x: np.ndarray, pads: Pairs) -> np.ndarray:
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _crop(full: np.ndarray, crops: Pairs) -> np.ndarray:
    """Keep rows ``[top, H - bottom)`` (and columns alike); a negative bottom/right appends zeros."""
    (top, bottom), (left, right) = crops
    h, w = full.shape[1:3]
    kept = full[:, top : h - max(bottom, 0), left : w - max(right, 0)]
    return np.pad(kept, ((0, 0), (0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))


def _uncrop(dy: np.ndarray, crops: Pairs, full_hw: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`_crop`: the kept rows back in place, zeros elsewhere (appended rows reach nothing)."""
    (top, bottom), (left, right) = crops
    rows, cols = full_hw[0] - max(bottom, 0) - top, full_hw[1] - max(right, 0) - left
    out = np.zeros((dy.shape[0], *full_hw, dy.shape[3]), F64)
    out[:, top : top + rows, left : left + cols] = dy[:, :rows, :cols]
    return out


def _conv_apply(layer: Conv2D, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Conv2D without its bias: zero padding ``layer.pads``, then the VALID stride-s correlation."""
    cols, (ho, wo) = _im2col(_pad(x, layer.pads(x.shape[1:])), layer.kernel, layer.stride)
    return (cols @ kernel.reshape(-1, kernel.shape[-1])).reshape(x.shape[0], ho, wo, kernel.shape[-1])


def _conv_fwd(layer: Conv2D, p, x, *, training: bool = False):
    y = _conv_apply(layer, p["kernel"], x)
    if layer.use_bias:
        y = y + p["bias"]
    return y, x


def _conv_bwd(layer: Conv2D, p, x, dy):
    kernel = p["kernel"]
    (top, _), (left, _) = pads = layer.pads(x.shape[1:])
    xp = _pad(x, pads)
    cols, out_hw = _im2col(xp, layer.kernel, layer.stride)
    dy2 = dy.reshape(-1, kernel.shape[-1])
    grads = {"kernel": (cols.T @ dy2).reshape(kernel.shape)}
    if layer.use_bias:
        grads["bias"] = dy2.sum(axis=0)
    dxp = _col2im(
        dy2 @ kernel.reshape(-1, kernel.shape[-1]).T, x.shape[0], out_hw, layer.kernel, layer.stride, xp.shape[1:3]
    )
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2]], grads


def _full_hw(layer: ConvTranspose2D, x: np.ndarray) -> tuple[int, int]:
    """Rows and columns of a transposed convolution's uncropped output, ``(H - 1)·s + k``."""
    return tuple((n - 1) * layer.stride + layer.kernel for n in x.shape[1:3])  # type: ignore[return-value]


def _conv_transpose_apply(layer: ConvTranspose2D, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ConvTranspose2D without its bias: the input-adjoint of the VALID stride-s Conv2D whose
    HWIO kernel is ``kernel`` (I = out, O = in), then the crops."""
    n, h, w, c_in = x.shape
    cols = x.reshape(-1, c_in) @ kernel.reshape(-1, c_in).T  # (N*H*W, k*k*out)
    full = _col2im(cols, n, (h, w), layer.kernel, layer.stride, _full_hw(layer, x))
    return _crop(full, layer.crops(x.shape[1:]))


def _conv_transpose_fwd(layer: ConvTranspose2D, p, x, *, training: bool = False):
    y = _conv_transpose_apply(layer, p["kernel"], x)
    if layer.use_bias:
        y = y + p["bias"]
    return y, x


def _conv_transpose_bwd(layer: ConvTranspose2D, p, x, dy):
    # The layer is y = crop(A^T x) with A the VALID conv; so dx = A uncrop(dy), a forward conv,
    # and the kernel gradient is the conv kernel gradient with input uncrop(dy), output grad x.
    kernel = p["kernel"]
    c_in = x.shape[3]
    cols, _ = _im2col(_uncrop(dy, layer.crops(x.shape[1:]), _full_hw(layer, x)), layer.kernel, layer.stride)
    grads = {"kernel": (cols.T @ x.reshape(-1, c_in)).reshape(kernel.shape)}
    if layer.use_bias:
        grads["bias"] = dy.sum(axis=(0, 1, 2))
    return (cols @ kernel.reshape(-1, c_in)).reshape(x.shape), grads


# -- BatchNorm -----------------------------------------------------------------------------------


@dataclass
class _BNCache:
    """What BatchNorm's backward (and the running update) needs from its forward."""

    training: bool
    xhat: np.ndarray
    inv_std: np.ndarray
    scale: np.ndarray
    mean: np.ndarray | None = None  # batch statistics, training only
    var: np.ndarray | None = None  # biased (1/n)
    count: int = 0  # values per channel


def _bn_fwd(layer: BatchNorm, p, x, *, training: bool = False):
    axes = tuple(range(x.ndim - 1))
    if training:
        mean = x.mean(axis=axes)
        centred = x - mean
        var = (centred * centred).mean(axis=axes)  # two-pass, biased
        inv_std = 1.0 / np.sqrt(var + layer.eps)
        cache = _BNCache(True, centred * inv_std, inv_std, p["scale"], mean, var, x.size // x.shape[-1])
    else:
        inv_std = 1.0 / np.sqrt(p["running_var"] + layer.eps)
        cache = _BNCache(False, (x - p["running_mean"]) * inv_std, inv_std, p["scale"])
    return cache.xhat * p["scale"] + p["bias"], cache


def _bn_bwd(layer: BatchNorm, p, cache: _BNCache, dy):
    axes = tuple(range(dy.ndim - 1))
    grads = {"scale": (dy * cache.xhat).sum(axis=axes), "bias": dy.sum(axis=axes)}
    dxhat = dy * cache.scale
    if not cache.training:  # running statistics are constants
        return dxhat * cache.inv_std, grads
    # Through the batch mean and variance: dx = (dxhat - mean(dxhat) - xhat·mean(dxhat·xhat)) / std.
    dx = cache.inv_std * (dxhat - dxhat.mean(axis=axes) - cache.xhat * (dxhat * cache.xhat).mean(axis=axes))
    return dx, grads


def _bn_running_update(layer: BatchNorm, buffers: dict[str, np.ndarray], cache: _BNCache) -> dict[str, np.ndarray]:
    """New running statistics; ``momentum`` is the weight of the new batch statistic (torch's)."""
    var = cache.var
    if layer.running_var == "unbiased":
        if cache.count < 2:
            raise ValueError("BatchNorm with running_var='unbiased' needs more than 1 value per channel in training")
        var = var * cache.count / (cache.count - 1)
    m = layer.momentum
    return {
        "running_mean": (1.0 - m) * buffers["running_mean"] + m * cache.mean,
        "running_var": (1.0 - m) * buffers["running_var"] + m * var,
    }


LAYER_MATH: dict[type[Layer], tuple[Forward, Backward]] = {
    Dense: (_dense_fwd, _dense_bwd),
    Conv2D: (_conv_fwd, _conv_bwd),
    ConvTranspose2D: (_conv_transpose_fwd, _conv_transpose_bwd),
    BatchNorm: (_bn_fwd, _bn_bwd),
    LeakyReLU: (_leaky_fwd, _leaky_bwd),
    ReLU: (_relu_fwd, _relu_bwd),
    Tanh: (_tanh_fwd, _tanh_bwd),
    Sigmoid: (_sigmoid_fwd, _sigmoid_bwd),
    Reshape: (_reshape_fwd, _reshape_bwd),
    Flatten: (_reshape_fwd, _reshape_bwd),
}

# Forward tangents (Jacobian-vector products) with biases dropped, for the layers that are
# piecewise linear in their input: tangent(layer, params, cache, t) -> J t. The elementwise
# masks are diagonal, so their tangent is their backward.
Tangent = Callable[[Any, dict[str, np.ndarray], Any, np.ndarray], np.ndarray]
PIECEWISE_LINEAR: dict[type[Layer], Tangent] = {
    Dense: lambda layer, p, cache, t: t @ p["kernel"],
    Conv2D: lambda layer, p, cache, t: _conv_apply(layer, p["kernel"], t),
    ConvTranspose2D: lambda layer, p, cache, t: _conv_transpose_apply(layer, p["kernel"], t),
    LeakyReLU: lambda layer, p, cache, t: _leaky_bwd(layer, p, cache, t)[0],
    ReLU: lambda layer, p, cache, t: _relu_bwd(layer, p, cache, t)[0],
    Reshape: lambda layer, p, cache, t: _reshape_fwd(layer, p, t)[0],
    Flatten: lambda layer, p, cache, t: _reshape_fwd(layer, p, t)[0],
}


class Network:
    """One network of the spec as a list of (layer, forward, backward), params by canonical name.

    ``tree`` arguments hold the parameters and, for BatchNorm in inference mode, the buffers
    (``{**params, **buffers}``); layers pick theirs by the ``{net}.{i}.`` prefix.
    """

    def __init__(self, spec: GANSpec, net: str):
        self.net = net
        self.layers = spec.layers(net)
        for layer in self.layers:
            if type(layer) not in LAYER_MATH:
                raise NotImplementedError(f"numpy reference has no math for {layer.describe()}")

    def _layer_params(self, tree: ParamTree, i: int) -> dict[str, np.ndarray]:
        prefix = f"{self.net}.{i}."
        return {k[len(prefix) :]: v for k, v in tree.items() if k.startswith(prefix)}

    def forward(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, list[Any]]:
        caches = []
        for i, layer in enumerate(self.layers):
            x, cache = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x, training=training)
            caches.append(cache)
        return x, caches

    def activations(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        outputs = []
        for i, layer in enumerate(self.layers):
            x, _ = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x, training=training)
            outputs.append(x)
        return outputs

    def backward(
        self, tree: ParamTree, caches: list[Any], dy: np.ndarray, deltas: list[Any] | None = None
    ) -> tuple[np.ndarray, ParamTree]:
        """Reverse mode from ``dy`` at the output; ``deltas[i]`` (when given) receives the
        gradient at layer ``i``'s output."""
        grads: ParamTree = {}
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if deltas is not None:
                deltas[i] = dy
            dy, g = LAYER_MATH[type(layer)][1](layer, self._layer_params(tree, i), caches[i], dy)
            for k, v in g.items():
                grads[f"{self.net}.{i}.{k}"] = v
        return dy, grads

    def update_buffers(self, buffers: ParamTree, caches: list[Any]) -> None:
        """One training-mode call's running-statistics update, in place, from its caches."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, BatchNorm):
                prefix = f"{self.net}.{i}."
                current = {k: buffers[prefix + k] for k in ("running_mean", "running_var")}
                for k, v in _bn_running_update(layer, current, caches[i]).items():
                    buffers[prefix + k] = v

    def not_piecewise_linear(self) -> tuple[int, Layer] | None:
        """The first layer that is not piecewise linear in its input, if any."""
        for i, layer in enumerate(self.layers):
            if type(layer) not in PIECEWISE_LINEAR:
                return i, layer
        return None

    def penalty_param_grads(self, tree: ParamTree, caches: list[Any], deltas: list[Any], v: np.ndarray) -> ParamTree:
        """Gradient w.r.t. the parameters of ``<v, g>`` with ``g = ∇_x Σ D(x)`` held at its
        masks: for a piecewise linear network ``g = W_1^T M_1 ... M_{L-1} W_L^T 1`` is
        multilinear in the kernels, and ``∂<v, g>/∂W_l`` is layer ``l``'s ordinary kernel
        gradient with input ``t_{l-1}`` (the tangent of ``v`` through layers ``1..l-1``, biases
        dropped, masks reused) and output gradient ``deltas[l]`` (from the backward that gave
        ``g``). Biases do not enter ``g``: their gradient is 0."""
        grads: ParamTree = {}
        t = v
        for i, layer in enumerate(self.layers):
            p = self._layer_params(tree, i)
            if isinstance(layer, (Dense, Conv2D, ConvTranspose2D)):
                # These layers' caches are their input, so t stands in for it.
                _, g = LAYER_MATH[type(layer)][1](layer, p, t, deltas[i])
                for k, value in g.items():
                    grads[f"{self.net}.{i}.{k}"] = np.zeros_like(value) if k == "bias" else value
            if i + 1 < len(self.layers):
                t = PIECEWISE_LINEAR[type(layer)](layer, p, caches[i], t)
        return grads


def _step(x: np.ndarray) -> np.ndarray:
    """relu'(x): 0 at 0, as torch, TensorFlow and JAX define it."""
    return (x > 0).astype(F64)


def loss_term_grads(spec: LossSpec) -> tuple[Callable, Callable, Callable]:
    """The derivatives ``r'``, ``f'``, ``g'`` of :mod:`gan_backends.losses`' per-logit terms,
    derived by hand (softplus' = sigmoid, relu' = step)."""
    if spec.name == "wasserstein":  # r = -l, f = l, g = -l
        return (lambda x: -np.ones_like(x)), np.ones_like, (lambda x: -np.ones_like(x))
    if spec.name == "least_squares":
        return (lambda x: x - spec.b), (lambda x: x - spec.a), (lambda x: x - spec.c)
    if spec.name == "hinge":
        return (lambda x: -_step(1.0 - x)), (lambda x: _step(1.0 + x)), (lambda x: -np.ones_like(x))
    real, fake = (lambda x: -sigmoid(-x)), sigmoid
    if spec.name == "minimax":
        return real, fake, (lambda x: -sigmoid(x))
    return real, fake, (lambda x: -sigmoid(-x))  # non_saturating


def penalty_grad_wrt_g(g: np.ndarray, spec: LossSpec) -> np.ndarray:
    """``∂ penalty / ∂ g`` per sample, from :func:`gan_backends.losses.gradient_penalty`:
    wgan_gp ``λ·2(n−1)/n · g / N`` with ``n = sqrt(s + norm_eps)``; r1 ``γ·g / N``."""
    n_samples = g.shape[0]
    if spec.penalty == "r1":
        return spec.penalty_weight * g / n_samples
    s = (g * g).reshape(n_samples, -1).sum(axis=1)
    norm = np.sqrt(s + spec.norm_eps)
    coef = spec.penalty_weight * 2.0 * (norm - 1.0) / norm / n_samples
    return coef.reshape(-1, *([1] * (g.ndim - 1))) * g


# -- optimisers (torch form, see the specs' docstrings) ----------------------------------------


class Optimizer:
    """Per-network optimiser: ``t`` updates taken, ``slots[slot][name]`` its canonical
    per-parameter buffers (``spec.optimizer_slots``), zeros at the start."""

    def __init__(self, spec: OptimizerSpec, names: list[str], shapes: dict[str, tuple[int, ...]]):
        self.spec = spec
        self.names = list(names)
        self.t = 0
        self.slots = {slot: {n: np.zeros(shapes[n], F64) for n in self.names} for slot in optimizer_slots(spec)}

    def update(self, params: ParamTree, grads: ParamTree) -> None:
        self.t += 1
        wd = self.spec.weight_decay
        for name in self.names:
            g = grads[name] + wd * params[name] if wd else grads[name]  # torch's L2, not decoupled
            params[name] = self._step(name, params[name], g)

    def _step(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Adam(Optimizer):
    """torch.optim.Adam's update in float64 (see :class:`~gan_backends.spec.AdamSpec`)."""

    spec: AdamSpec

    def _step(self, name, p, g):
        s, m, v = self.spec, self.slots["m"], self.slots["v"]
        m[name] = s.beta1 * m[name] + (1.0 - s.beta1) * g
        v[name] = s.beta2 * v[name] + (1.0 - s.beta2) * g * g
        denom = np.sqrt(v[name]) / np.sqrt(1.0 - s.beta2**self.t) + s.eps
        return p - (s.lr / (1.0 - s.beta1**self.t)) * m[name] / denom


class RMSprop(Optimizer):
    """torch.optim.RMSprop's update (eps outside the root; see :class:`~gan_backends.spec.RMSpropSpec`)."""

    spec: RMSpropSpec

    def _step(self, name, p, g):
        s, v = self.spec, self.slots["v"]
        v[name] = s.alpha * v[name] + (1.0 - s.alpha) * g * g
        if s.centered:
            avg = self.slots["grad_avg"]
            avg[name] = s.alpha * avg[name] + (1.0 - s.alpha) * g
            denom = np.sqrt(v[name] - avg[name] * avg[name]) + s.eps
        else:
            denom = np.sqrt(v[name]) + s.eps
        if s.momentum:
            buf = self.slots["momentum"]
            buf[name] = s.momentum * buf[name] + g / denom
            return p - s.lr * buf[name]
        return p - s.lr * g / denom


class SGD(Optimizer):
    """torch.optim.SGD's update, dampening 0 (see :class:`~gan_backends.spec.SGDSpec`); the
    momentum buffer starts at 0, so its first value is the first gradient, as torch's."""

    spec: SGDSpec

    def _step(self, name, p, g):
        s = self.spec
        if s.momentum:
            buf = self.slots["momentum"]
            buf[name] = s.momentum * buf[name] + g
            g = g + s.momentum * buf[name] if s.nesterov else buf[name]
        return p - s.lr * g


OPTIMIZERS: dict[type, type[Optimizer]] = {AdamSpec: Adam, RMSpropSpec: RMSprop, SGDSpec: SGD}


def make_optimizer(spec: OptimizerSpec, names: list[str], shapes: dict[str, tuple[int, ...]]) -> Optimizer:
    return OPTIMIZERS[type(spec)](spec, names, shapes)


class NumpyReference(Backend):
    """Float64 ground truth. Modes: ``float64`` only."""

    loss_ops = NUMPY_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return np.asarray(array)

    name = "numpy"
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

    @classmethod
    def default_device(cls) -> str:
        return "cpu"

    @property
    def device(self) -> str:
        return "cpu"

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

    def get_params(self) -> ParamTree:
        return {k: v.copy() for k, v in self.params.items()}

    def get_buffers(self) -> ParamTree:
        return {k: v.copy() for k, v in self.buffers.items()}

    def set_buffers(self, buffers: ParamTree) -> None:
        expected = buffer_shapes(self.spec)
        got = {k: tuple(np.shape(v)) for k, v in buffers.items()}
        if got != expected:
            raise ValueError(f"buffers do not fit spec {self.spec.name!r}: expected {expected}, got {got}")
        self.buffers = {k: np.array(buffers[k], dtype=F64) for k in expected}

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
    def _alpha(self, alpha: np.ndarray | None, batch: int) -> np.ndarray | None:
        if self.spec.loss.penalty != "wgan_gp":
            return None
        if alpha is None:
            raise ValueError(f"spec {self.spec.name!r} uses WGAN-GP and needs alpha of shape ({batch},)")
        alpha = self._as_input(alpha)
        if alpha.shape != (batch,):
            raise ValueError(f"alpha: expected shape ({batch},), got {alpha.shape}")
        return alpha

    def _check_penalty_differentiable(self) -> None:
        bad = self.d_net.not_piecewise_linear() if self.spec.loss.penalty != "none" else None
        if bad is not None:
            i, layer = bad
            raise NotImplementedError(
                f"numpy reference: the {self.spec.loss.penalty} penalty's parameter gradient is written for critics "
                f"that are piecewise linear in their input; discriminator layer {i} {layer.describe()} is not"
            )

    def _penalty(
        self,
        real: np.ndarray,
        fake: np.ndarray,
        alpha: np.ndarray | None,
        real_cache: list[Any],
        *,
        grads: bool,
        update: bool,
    ) -> tuple[float, ParamTree]:
        """The penalty value and (``grads``) its exact gradient w.r.t. D's parameters; ``fake``
        is a constant here."""
        loss = self.spec.loss
        if loss.penalty == "none":
            return 0.0, {}
        if loss.penalty == "wgan_gp":
            a = alpha.reshape(-1, *([1] * (real.ndim - 1)))
            _, cache = self._call(self.d_net, a * real + (1.0 - a) * fake, update)
        else:  # r1 at the real batch: D(real[i]) is the call already made
            cache = real_cache
        deltas: list[Any] = [None] * len(self.d_net.layers)
        tree = self._tree()
        g, _ = self.d_net.backward(tree, cache, np.ones((real.shape[0], 1), F64), deltas)
        value = gradient_penalty(NUMPY_OPS, (g * g).reshape(g.shape[0], -1).sum(axis=1), loss)
        if not grads:
            return float(value), {}
        return float(value), self.d_net.penalty_param_grads(tree, cache, deltas, penalty_grad_wrt_g(g, loss))

    def _d_grads(
        self, real: np.ndarray, fake: np.ndarray, alpha: np.ndarray | None, update: bool
    ) -> tuple[dict[str, float], ParamTree, np.ndarray, list[Any]]:
        """One D update's terms and gradient (``fake`` given: G's call is the caller's); also
        ``D(fake)``'s logits and caches, which the G gradient can reuse."""
        tree = self._tree()
        real_logits, real_cache = self._call(self.d_net, real, update)
        fake_logits, fake_cache = self._call(self.d_net, fake, update)
        penalty, p_grads = self._penalty(real, fake, alpha, real_cache, grads=True, update=update)
        loss = self.spec.loss
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, loss, penalty)
        real_grad, fake_grad, _ = loss_term_grads(loss)
        d_real_logits = loss.d_scale * real_grad(real_logits) / real_logits.size
        d_fake_logits = loss.d_scale * fake_grad(fake_logits) / fake_logits.size
        _, g_real = self.d_net.backward(tree, real_cache, d_real_logits)
        _, g_fake = self.d_net.backward(tree, fake_cache, d_fake_logits)
        grads = {k: g_real[k] + g_fake[k] + (p_grads[k] if k in p_grads else 0.0) for k in g_real}
        return {k: float(v) for k, v in terms.items()}, grads, fake_logits, fake_cache

    def _g_grads(self, g_cache: list[Any], logits: np.ndarray, d_cache: list[Any]) -> tuple[float, ParamTree]:
        """G's loss and gradient from the calls ``fake = G(z)`` (``g_cache``) and ``D(fake)``."""
        tree = self._tree()
        g_loss = generator_loss(NUMPY_OPS, logits, self.spec.loss)
        d_logits = loss_term_grads(self.spec.loss)[2](logits) / logits.size
        d_fake, _ = self.d_net.backward(tree, d_cache, d_logits)
        _, grads = self.g_net.backward(tree, g_cache, d_fake)
        return float(g_loss), grads

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        """Forward only (plus the input gradient a penalty needs): finite-difference tests of
        the backward pass rely on this. Running statistics are left alone."""
        real, z = self._as_input(real), self._as_input(z)
        alpha = self._alpha(alpha, real.shape[0])
        fake, _ = self._call(self.g_net, z, False)
        real_logits, real_cache = self._call(self.d_net, real, False)
        fake_logits, _ = self._call(self.d_net, fake, False)
        penalty, _ = self._penalty(real, fake, alpha, real_cache, grads=False, update=False)
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, self.spec.loss, penalty)
        terms["g_loss"] = generator_loss(NUMPY_OPS, fake_logits, self.spec.loss)
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        self._check_penalty_differentiable()
        real, z = self._as_input(real), self._as_input(z)
        alpha = self._alpha(alpha, real.shape[0])
        fake, g_cache = self._call(self.g_net, z, False)
        terms, d_grads, fake_logits, fake_cache = self._d_grads(real, fake, alpha, False)
        terms["g_loss"], g_grads = self._g_grads(g_cache, fake_logits, fake_cache)
        grads = {**g_grads, **d_grads}
        return terms, {name: grads[name] for name in self.params}

    def _clip(self) -> None:
        c = self.spec.loss.clip_value
        if c is not None:
            for name in self.d_opt.names:
                self.params[name] = np.clip(self.params[name], -c, c)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """The documented order: per D update ``G(z_d[i])``, ``D(real[i])``, ``D(fake)``, the
        penalty's call, the D step, clipping; then ``G(z_g)``, ``D(G(z_g))``, the G step. Each
        call updates its BatchNorm running statistics once."""
        batch.validate(self.spec)
        self._check_penalty_differentiable()
        terms: dict[str, float] = {}
        for i in range(self.spec.n_critic):
            real = self._as_input(batch.real[i])
            alpha = self._alpha(None if batch.alpha is None else batch.alpha[i], real.shape[0])
            fake, _ = self._call(self.g_net, self._as_input(batch.z_d[i]), True)
            terms, d_grads, _, _ = self._d_grads(real, fake, alpha, True)
            self.d_opt.update(self.params, d_grads)
            self._clip()
        fake, g_cache = self._call(self.g_net, self._as_input(batch.z_g), True)
        logits, d_cache = self._call(self.d_net, fake, True)
        terms["g_loss"], g_grads = self._g_grads(g_cache, logits, d_cache)
        self.g_opt.update(self.params, g_grads)
        return terms

    def device_step(self, batch: TrainBatch) -> Callable[[], dict[str, float]]:
        batch.validate(self.spec)
        return lambda: self.train_step(batch)

    def synchronize(self, outputs: Any) -> None:
        return None  # NumPy computes on the host, synchronously
