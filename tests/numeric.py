"""Independent float64 NumPy for the tests, written once: direct-loop convolutions, the padding
and cropping rules derived from the frameworks' documentation, BatchNorm and its running update,
bf16 rounding on bits, torch-form optimiser updates, central finite differences, and the two
error measures the assertions use.

Nothing here calls the package under test (only its spec objects are read for their fields), so
an expected value computed here cannot share a mistake with the code it checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Pads = tuple[tuple[int, int], tuple[int, int]]

# -- error measures -----------------------------------------------------------------------------


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """``‖a − b‖₂ / ‖b‖₂`` over the whole array: an average-like measure, forgiving of one
    outlying element (the shapes must agree: broadcasting would hide a layout bug)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def rel_max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a − b| / max|b|``: the worst element against the array's scale, so a single wrong
    pixel cannot hide in a large array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- padding and cropping from the documentation ------------------------------------------------


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' (kernel_shape_util.cc): out = ceil(in / s), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def expected_pads(padding: str | int, hw: tuple[int, ...], kernel: int, stride: int) -> Pads:
    """The zero padding ((top, bottom), (left, right)) a Conv2D's ``padding`` means."""
    if padding == "same":
        return same_pads(hw[0], kernel, stride), same_pads(hw[1], kernel, stride)
    if padding == "valid":
        return (0, 0), (0, 0)
    return (padding, padding), (padding, padding)


def expected_crops(padding: str | int, hw: tuple[int, ...], kernel: int, stride: int, output_padding: int = 0) -> Pads:
    """What a ConvTranspose2D keeps of the full scatter ``(in − 1)·s + k``: ((top, bottom),
    (left, right)) cut off, a negative ``bottom``/``right`` meaning zeros appended. Keras 'same':
    ``in·s`` pixels from ``max(k − s, 0) // 2``; Keras 'valid': ``in·s + max(k − s, 0)`` from 0;
    torch: ``(in − 1)·s − 2p + k + output_padding`` from ``p``."""
    crops = []
    for size in hw[:2]:
        full = (size - 1) * stride + kernel
        if padding == "same":
            start, kept = max(kernel - stride, 0) // 2, size * stride
        elif padding == "valid":
            start, kept = 0, size * stride + max(kernel - stride, 0)
        else:
            start, kept = padding, (size - 1) * stride - 2 * padding + kernel + output_padding
        crops.append((start, full - start - kept))
    return crops[0], crops[1]


# -- convolutions by their definitions ----------------------------------------------------------


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: int, pads: Pads) -> np.ndarray:
    """NHWC cross-correlation with an HWIO kernel after explicit zero padding, one output pixel at
    a time (no bias)."""
    (top, bottom), (left, right) = pads
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = kernel.shape[:2]
    rows, cols = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[3]))
    for i in range(rows):
        for j in range(cols):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, np.asarray(kernel, np.float64))
    return out


def conv_transpose_full(y: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """The transposed convolution by its definition, the adjoint of the convolution: every input
    pixel scatters ``kernel`` ``(kh, kw, out, in)`` times its value onto the output, ``stride``
    apart; ``(in − 1)·s + k`` pixels per axis, nothing cropped."""
    kh, kw = kernel.shape[:2]
    n, h, w, _ = y.shape
    full = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kw, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :] += np.einsum(
                "nc,hwoc->nhwo", np.asarray(y[:, i, j, :], np.float64), np.asarray(kernel, np.float64)
            )
    return full


def crop(full: np.ndarray, crops: Pads) -> np.ndarray:
    """Drop ``before`` rows/columns at the start and ``after`` at the end; a negative ``after``
    appends zeros instead."""
    (top, bottom), (left, right) = crops
    out = np.pad(full, ((0, 0), (0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))
    return out[:, top : out.shape[1] - max(bottom, 0), left : out.shape[2] - max(right, 0), :]


def conv_transpose(y: np.ndarray, kernel: np.ndarray, stride: int, crops: Pads) -> np.ndarray:
    """The full scatter, cropped (no bias)."""
    return crop(conv_transpose_full(y, kernel, stride), crops)


def conv_input_grad(dy: np.ndarray, kernel: np.ndarray, stride: int, pads: Pads, in_hw: tuple[int, int]) -> np.ndarray:
    """``∂(Σ conv2d(x) · dy) / ∂x``: dy scattered back through the HWIO kernel (read as the
    transposed convolution's ``(kh, kw, out=I, in=O)``), the padding cut off; rows no window
    reached stay zero."""
    (top, bottom), (left, right) = pads
    full = conv_transpose_full(dy, kernel, stride)
    padded = np.zeros((dy.shape[0], in_hw[0] + top + bottom, in_hw[1] + left + right, kernel.shape[2]))
    padded[:, : full.shape[1], : full.shape[2], :] = full
    return padded[:, top : top + in_hw[0], left : left + in_hw[1], :]


# -- BatchNorm ----------------------------------------------------------------------------------


def batchnorm(x: np.ndarray, scale, bias, eps: float, stats: tuple | None = None) -> np.ndarray:
    """Normalised over every axis but the last with the batch's mean and biased (1/n) variance,
    two-pass, or with the given ``(mean, var)`` running statistics."""
    axes = tuple(range(x.ndim - 1))
    if stats is None:
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
    else:
        mean, var = stats
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def running_update(stats: tuple, x: np.ndarray, momentum: float, running_var: str) -> tuple[np.ndarray, np.ndarray]:
    """One running-statistics update from batch ``x``, torch's convention: ``momentum`` weighs the
    NEW statistic; the stored variance is unbiased (n/(n−1)) or biased as the spec says."""
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    if running_var == "unbiased":
        var = var * n / (n - 1)
    return (1 - momentum) * stats[0] + momentum * mean, (1 - momentum) * stats[1] + momentum * var


# -- numbers ------------------------------------------------------------------------------------


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + eˣ)`` without overflow."""
    return np.logaddexp(x, 0.0)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), kept as float32: by hand, on bits."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


def bf16_product(op: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, kernel: np.ndarray):
    """``(bf16(op(bf16(x), bf16(kernel))), op(x, kernel))`` in float32/float64: the spec's bf16
    semantics of a linear layer emulated, and the exact product it must differ from."""
    emulated = to_bf16(op(to_bf16(x).astype(np.float64), to_bf16(kernel).astype(np.float64)).astype(np.float32))
    return emulated, op(np.asarray(x, np.float64), np.asarray(kernel, np.float64))


# -- finite differences -------------------------------------------------------------------------


def central_difference(f: Callable[[dict], Any], params: dict, name: str, index: tuple, h: float = 1e-6) -> Any:
    """``(f(p + h·e) − f(p − h·e)) / 2h`` for the unit vector ``e`` of ``params[name][index]``
    (``f`` may return an array: several quantities differentiated from one pair of calls)."""
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus[name][index] += h
    minus[name][index] -= h
    return (f(plus) - f(minus)) / (2 * h)


def input_gradient(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Per-sample ``∇ₓ f(x)`` for ``f`` mapping a batch to one value per sample (``(n, 1)`` or
    ``(n,)``), by central differences, one input coordinate of every sample at once (each sample's
    value must depend on its own input only)."""
    g = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape[1:]):
        plus, minus = x.copy(), x.copy()
        plus[(slice(None), *index)] += h
        minus[(slice(None), *index)] -= h
        g[(slice(None), *index)] = (np.reshape(f(plus), -1) - np.reshape(f(minus), -1)) / (2 * h)
    return g


# -- optimisers in torch's form -----------------------------------------------------------------


def optimizer_slots(opt) -> tuple[str, ...]:
    """The state an optimiser spec keeps, by its class name (torch's buffers)."""
    kind = type(opt).__name__
    if kind == "AdamSpec":
        return ("m", "v")
    if kind == "RMSpropSpec":
        return ("v", *(("grad_avg",) if opt.centered else ()), *(("momentum",) if opt.momentum else ()))
    return ("momentum",) if opt.momentum else ()


def optimizer_update(opt, p: np.ndarray, g: np.ndarray, slots: dict, step: int) -> np.ndarray:
    """One step of ``torch.optim.{Adam, RMSprop, SGD}`` as documented, for the spec ``opt``;
    ``slots`` (zeros before the first step, or empty) updated in place. Weight decay is L2 on
    the gradient (torch's, not decoupled); RMSprop's eps is added after the square root; SGD's
    momentum buffer starts as the first gradient."""
    kind = type(opt).__name__
    g = g + opt.weight_decay * p
    if kind == "AdamSpec":
        slots["m"] = opt.beta1 * slots.get("m", 0.0) + (1 - opt.beta1) * g
        slots["v"] = opt.beta2 * slots.get("v", 0.0) + (1 - opt.beta2) * g * g
        vhat = np.sqrt(slots["v"]) / np.sqrt(1 - opt.beta2**step)
        return p - opt.lr / (1 - opt.beta1**step) * slots["m"] / (vhat + opt.eps)
    if kind == "RMSpropSpec":
        slots["v"] = opt.alpha * slots.get("v", 0.0) + (1 - opt.alpha) * g * g
        if opt.centered:
            slots["grad_avg"] = opt.alpha * slots.get("grad_avg", 0.0) + (1 - opt.alpha) * g
            denom = np.sqrt(slots["v"] - slots["grad_avg"] ** 2) + opt.eps
        else:
            denom = np.sqrt(slots["v"]) + opt.eps
        if opt.momentum:
            slots["momentum"] = opt.momentum * slots.get("momentum", 0.0) + g / denom
            return p - opt.lr * slots["momentum"]
        return p - opt.lr * g / denom
    if opt.momentum:
        slots["momentum"] = g.copy() if step == 1 else opt.momentum * slots["momentum"] + g
        g = g + opt.momentum * slots["momentum"] if opt.nesterov else slots["momentum"]
    return p - opt.lr * g
