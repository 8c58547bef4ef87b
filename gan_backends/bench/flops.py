r"""Analytic FLOP counts of one GAN training step, as the backends run it (``docs/conv-gans.md``).

Framework-free: everything is derived from the :class:`~gan_backends.spec.GANSpec`'s layer shapes
(per sample, no batch axis; images channels-last ``(H, W, C)``). A multiply-add counts as 2 FLOPs.
Two totals are kept apart: **matmul** FLOPs (Dense and convolution products and their biases:
what tensor cores / GEMM kernels do) and **elementwise** FLOPs (BatchNorm, activations, the
penalty's per-element arithmetic, the optimiser update).

Forward, per sample (``M`` is the product part, ``b`` the bias part; ``forward_matmul = M + b``)::

    Dense            M = 2 · in · out                       b = out              (if use_bias)
    Conv2D           M = 2 · Ho · Wo · k² · Cin · Cout       b = Ho · Wo · Cout   (if use_bias)
    ConvTranspose2D  M = 2 · Hin · Win · k² · Cin · Cout     b = Ho · Wo · Cout   (if use_bias)

``Ho, Wo`` are the layer's output size (padding from :meth:`Conv2D.pads`, zero taps included:
the padded product is what runs). A transposed convolution is the adjoint of a VALID convolution:
every input pixel meets every kernel tap, and the crops of :meth:`ConvTranspose2D.crops` discard
computed pixels without saving their products, so ``M`` uses the INPUT size.

Elementwise layers, FLOPs per element of their output (:data:`FLOP_RULES`)::

    layer       forward                                     backward
    ReLU        1  (max)                                    1  (mask)
    LeakyReLU   2  (slope·x, select)                        2
    Tanh        1  (a transcendental counts 1)              3  (g · (1 − y²))
    Sigmoid     4  (negate, exp, add, divide)               3  (g · y · (1 − y))
    BatchNorm   7  (mean: 1; two-pass var: sub, square,     7  (Σg, Σg·x̂: 3; g − Σg/n − x̂·Σg·x̂/n,
                    add: 3; normalise, scale, shift: 3)         times scale·rstd: 4), scale/bias grads included
    Reshape, Flatten  0                                     0
    Residual    its sublayers' costs (both branches)       its sublayers' + 1 per INPUT element
                + 1 per output element (main + shortcut)    (the branches' input gradients added)

The resampling layers, per sample (input ``H × W × C``, output ``Ho × Wo × C``; see
:func:`_resample_rules`)::

    Upsample nearest    0 (a copy)                          (k² − 1) · H · W · C   (each input sums its k² outputs)
    Upsample bilinear   3 · Ho·W·C + 3 · Ho·Wo·C            4 · Ho·W·C + 4 · Ho·Wo·C
                        (separable: per axis 2 multiplies     (the transpose: 2 multiplies and 2
                        and 1 add per output of the pass)      accumulations per output of each pass)
    AvgPool2D           pool² per output (pool² − 1 adds,   (pool² + 1) per output (dy / divisor, then
                        one multiply by 1/divisor; padded     pool² accumulations into the window)
                        taps included, as for Conv2D)
    GlobalSumPool       (H · W − 1) · C                     0 (a broadcast)

SAGAN's ``SelfAttention`` (``N = H·W``, ``C`` channels, ``K`` key, ``V`` value; :func:`_attention_rule`)::

    matmul    M = 2·N·C·(2K + V) [+ 2·N·V·C with the output conv]   b = N·(2K + V [+ C])
              + 2·N²·K + 2·N²·V  (s = f gᵀ, o = β h: products of two activations, no weight side)
              backward: the convs as any matmul layer, + 4·N²·(K + V) (dβ, dh, df, dg) whenever a
              backward runs through the block
    elementwise  forward 5·N² (softmax) + 2·N·C (x + γ·o);  backward 4·N² + 4·N·C

Per-channel work (BatchNorm's rsqrt, running-statistics update) is O(C) and is not counted.

Backward of one network call, given whether its weights get gradients (``weights``) and whether
the gradient must reach its input (``to_input``). Layer ``i`` needs its input gradient when
``to_input`` or some earlier layer has trainable parameters getting gradients; then::

    matmul layer:       weight grad  M + b   (if weights; the bias grad is a reduction of the output grad)
                        input grad   M       (if layer i needs its input gradient)
    elementwise layer:  BACKWARD_PER_ELEMENT · elements   (if layer i needs its input gradient, or it has
                                                           parameters (BatchNorm) and weights get gradients)

So the first matmul layer of a network whose input is data or noise gets no input grad, unless
something needs ∂/∂input. With ``F`` = forward, ``B(w, i)`` = backward of a call::

    D update (× n_critic):  F_G  +  2 · F_D  +  2 · B_D(weights, not to input)  [+ penalty]
    G update:               F_G  +  F_D  +  B_D(no weights, to input)  +  B_G(weights, not to input)
                            [+ F_D: a relativistic loss's D(real), a constant of G's update, no backward]

Gradient penalty (``wgan_gp`` at interpolates, ``r1`` at the real batch, ``r2`` at the fake
batch: one more batch of ``batch_size`` samples through D per D update; ``r1_r2`` two). Computing
``∇ₓD(x̂)`` costs ``F_D + B_D(no weights, to input)``; reverse mode through that double pass, to
get D's weight gradient, costs about twice it (each product of the pass has an input-side and a
weight-side adjoint). The model counted, per penalised batch (``PENALTY_SITES``)::

    penalty = 3 · (F_D + B_D(no weights, to input))          matmul and elementwise alike
            + PENALTY_NORM_PER_ELEMENT · data elements        (Σ g², and its derivative: 2 + 2)
            + INTERPOLATE_PER_ELEMENT · data elements         (wgan_gp only: α·x + (1 − α)·x̃)

(R1 and R2 reuse no work of the loss's D(real) / D(fake) calls in the backends: each takes its
input gradient through a call of its own.)

Optimiser updates are included in the elementwise count, once per update, independent of the
batch size (so ``elementwise`` is affine, not linear, in the batch size; ``matmul`` is linear).
Per trainable parameter (:func:`optimizer_flops_per_param`)::

    Adam     13   m: 3, v: 4, sqrt(v)/sqrt(1 − β₂ᵗ) + eps: 3, lr/(1 − β₁ᵗ) · m / denom: 2, p −: 1
    RMSprop   9   v: 4, sqrt + eps: 2, g / d: 1, lr ·: 1, p −: 1;  + 5 centered, + 2 momentum
    SGD       2   lr · g, p −;  + 2 momentum, + 2 nesterov
    weight_decay > 0 adds 2 (g + wd · p) to any of them; WGAN clipping adds 2 per D parameter per
    D update (min, max).

Spectral normalisation's power iteration, σ and ``W / σ`` (per network call, whatever the
batch) are in the elementwise count too: :mod:`gan_backends.bench.flops_spectral`.

Loss terms (a few FLOPs per logit, O(batch)) and random-number generation are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gan_backends.bench.flops_spectral import step_flops as spectral_step_flops
from gan_backends.losses import PENALTY_SITES
from gan_backends.spec import (
    NETWORKS,
    AdamSpec,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    GlobalSumPool,
    Layer,
    LeakyReLU,
    OptimizerSpec,
    ReLU,
    Reshape,
    Residual,
    RMSpropSpec,
    SelfAttention,
    Shape,
    Sigmoid,
    Tanh,
    Upsample,
)

#: Reverse mode through "forward + input backward" costs about this many times that pass.
PENALTY_PASSES = 3
#: Squared norm of the input gradient (square, add) and its derivative (2·g·upstream).
PENALTY_NORM_PER_ELEMENT = 4
#: WGAN-GP's interpolation α·x + (1 − α)·x̃ (two multiplies, one add).
INTERPOLATE_PER_ELEMENT = 3


@dataclass(frozen=True)
class LayerFlops:
    """Forward FLOPs of one layer for ONE sample: ``forward_matmul`` (product + bias) and
    ``forward_elementwise`` (elementwise layers); ``layer`` is the spec's type name."""

    net: str
    index: int
    layer: str
    forward_matmul: int
    forward_elementwise: int


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one whole training step at ``batch_size`` (n_critic D updates and one G update)."""

    batch_size: int
    matmul: int
    elementwise: int
    per_layer: tuple[LayerFlops, ...]

    @property
    def total(self) -> int:
        return self.matmul + self.elementwise


@dataclass(frozen=True)
class _LayerCost:
    """Per-sample costs of one layer: product ``m``, bias ``b``, forward/backward elementwise."""

    m: int
    b: int
    ew_forward: int
    ew_backward: int
    trainable: bool
    #: Products of two activations (SelfAttention's f gᵀ and β h): in the forward, and
    #: ``backward_extra`` in every backward through the layer, with neither a weight nor an input side.
    forward_extra: int = 0
    backward_extra: int = 0


#: One layer's per-sample costs from its input and output shapes.
FlopRule = Callable[[Layer, Shape, Shape], _LayerCost]


def _matmul(product: Callable[[Any, Shape, Shape], int]) -> FlopRule:
    """A product layer: ``product(layer, in_shape, out_shape)`` FLOPs, plus one per output
    element for the bias."""

    def rule(layer: Any, in_shape: Shape, out_shape: Shape) -> _LayerCost:
        bias = math.prod(out_shape) if layer.use_bias else 0
        return _LayerCost(product(layer, in_shape, out_shape), bias, 0, 0, bool(layer.param_shapes(in_shape)))

    return rule


def _elementwise(forward: int, backward: int) -> FlopRule:
    """An elementwise layer: ``forward`` and ``backward`` FLOPs per output element."""

    def rule(layer: Layer, in_shape: Shape, out_shape: Shape) -> _LayerCost:
        n = math.prod(out_shape)
        return _LayerCost(0, 0, forward * n, backward * n, bool(layer.param_shapes(in_shape)))

    return rule


def _resample_rules() -> dict[type[Layer], FlopRule]:
    """The resampling layers' rules (module docstring): per-sample totals, not per-element constants."""

    def upsample(layer: Upsample, i: Shape, o: Shape) -> _LayerCost:
        if layer.method == "nearest":
            return _LayerCost(0, 0, 0, (layer.factor**2 - 1) * math.prod(i), False)
        passes = o[0] * i[1] * i[2] + math.prod(o)  # rows pass (Ho·W·C), then columns (Ho·Wo·C)
        return _LayerCost(0, 0, 3 * passes, 4 * passes, False)

    def avg_pool(layer: AvgPool2D, i: Shape, o: Shape) -> _LayerCost:
        return _LayerCost(0, 0, layer.pool**2 * math.prod(o), (layer.pool**2 + 1) * math.prod(o), False)

    def global_sum(layer: GlobalSumPool, i: Shape, o: Shape) -> _LayerCost:
        return _LayerCost(0, 0, (i[0] * i[1] - 1) * i[2], 0, False)

    return {Upsample: upsample, AvgPool2D: avg_pool, GlobalSumPool: global_sum}


def _attention_rule(layer: SelfAttention, i: Shape, o: Shape) -> _LayerCost:
    """SAGAN's block (module docstring): its 1×1 convs as matmul layers, the two N×N products
    as ``forward_extra`` (their backward, four products of the same size, as ``backward_extra``)."""
    n, (c, k, v) = i[0] * i[1], layer.channels(i)
    convs = layer.conv_shapes(i).values()
    m = sum(2 * n * cin * cout for cin, cout in convs)
    b = sum(n * cout for _, cout in convs) if layer.use_bias else 0
    products = 2 * n * n * (k + v)
    # Softmax: max, subtract, exp, sum, divide per score; its backward 4 (β·dβ, row sum, subtract,
    # multiply). The residual x + γ·o: 2 per output; backward γ·dy, Σ dy·o (2), dx + dy.
    return _LayerCost(m, b, 5 * n * n + 2 * n * c, 4 * n * n + 4 * n * c, True, products, 2 * products)


#: The FLOP rule of every spec layer type (the module docstring gives each formula). A
#: transposed convolution multiplies every input pixel by every tap, crops or not.
FLOP_RULES: dict[type[Layer], FlopRule] = {
    Dense: _matmul(lambda layer, i, o: 2 * i[0] * layer.units),
    Conv2D: _matmul(lambda layer, i, o: 2 * o[0] * o[1] * layer.kernel**2 * i[2] * layer.filters),
    ConvTranspose2D: _matmul(lambda layer, i, o: 2 * i[0] * i[1] * layer.kernel**2 * i[2] * layer.filters),
    ReLU: _elementwise(1, 1),
    LeakyReLU: _elementwise(2, 2),
    Tanh: _elementwise(1, 3),
    Sigmoid: _elementwise(4, 3),
    BatchNorm: _elementwise(7, 7),
    Reshape: _elementwise(0, 0),
    Flatten: _elementwise(0, 0),
    **_resample_rules(),
    SelfAttention: _attention_rule,
}


def _residual(layer: Residual, in_shape: Shape, out_shape: Shape) -> _LayerCost:
    """A residual block counts as one layer: its sublayers' costs over both branches (recursively),
    plus one add per output element forward (``main + shortcut``) and one per input element
    backward (the two branches' input gradients summed). Its backward is counted as a whole: all
    of it when the block's input gradient is needed (every block after a network's first
    trainable layer), else its weight gradients and elementwise backward."""
    subs = [
        _layer_cost(sub, i, o)
        for branch, layers in layer.branches()
        for sub, (i, o) in zip(layers, layer.branch_shapes(in_shape, branch))
    ]
    return _LayerCost(
        sum(c.m for c in subs),
        sum(c.b for c in subs),
        sum(c.ew_forward for c in subs) + math.prod(out_shape),
        sum(c.ew_backward for c in subs) + math.prod(in_shape),
        any(c.trainable for c in subs),
    )


FLOP_RULES[Residual] = _residual


def _layer_cost(layer: Layer, in_shape: Shape, out_shape: Shape) -> _LayerCost:
    try:
        rule = FLOP_RULES[type(layer)]
    except KeyError:
        raise TypeError(f"no FLOP count for layer type {type(layer).__name__}") from None
    return rule(layer, in_shape, out_shape)


def _costs(spec: GANSpec, net: str) -> list[_LayerCost]:
    return [_layer_cost(layer, i, o) for layer, (i, o) in zip(spec.layers(net), spec.layer_shapes(net))]


def layer_flops(spec: GANSpec) -> list[LayerFlops]:
    """Per-sample forward FLOPs of every layer, the generator's first, then the discriminator's."""
    return [
        LayerFlops(net, i, layer.type_name, cost.m + cost.b + cost.forward_extra, cost.ew_forward)
        for net in NETWORKS
        for i, (layer, cost) in enumerate(zip(spec.layers(net), _costs(spec, net)))
    ]


def forward_flops(spec: GANSpec, net: str, batch_size: int) -> int:
    """Matmul FLOPs (products and biases) of one forward call of ``net`` on ``batch_size`` samples."""
    return batch_size * sum(cost.m + cost.b + cost.forward_extra for cost in _costs(spec, net))


def _forward(costs: list[_LayerCost]) -> tuple[int, int]:
    return sum(c.m + c.b + c.forward_extra for c in costs), sum(c.ew_forward for c in costs)


def _backward(costs: list[_LayerCost], weights: bool, to_input: bool) -> tuple[int, int]:
    """(matmul, elementwise) per sample of one backward pass through a network call."""
    matmul = elementwise = 0
    for i, c in enumerate(costs):
        needs_input_grad = to_input or (weights and any(p.trainable for p in costs[:i]))
        through = needs_input_grad or (weights and c.trainable)  # a backward runs through the layer
        if c.m:
            matmul += (c.m + c.b if weights else 0) + (c.m if needs_input_grad else 0)
            matmul += c.backward_extra if through else 0
            elementwise += c.ew_backward if through else 0  # 0 but for SelfAttention's softmax
        elif through:  # BatchNorm's scale and bias grads
            elementwise += c.ew_backward
    return matmul, elementwise


def optimizer_flops_per_param(opt: OptimizerSpec) -> int:
    """Elementwise FLOPs of one optimiser update per trainable parameter (module docstring)."""
    if isinstance(opt, AdamSpec):
        flops = 13
    elif isinstance(opt, RMSpropSpec):
        flops = 9 + (5 if opt.centered else 0) + (2 if opt.momentum else 0)
    else:
        flops = 2 + (2 if opt.momentum else 0) + (2 if opt.nesterov else 0)
    return flops + (2 if opt.weight_decay else 0)


def num_params(spec: GANSpec, net: str) -> int:
    """Trainable parameters of ``net`` (kernels, biases, BatchNorm scale and bias)."""
    return sum(
        math.prod(shape)
        for layer, (in_shape, _) in zip(spec.layers(net), spec.layer_shapes(net))
        for shape in layer.param_shapes(in_shape).values()
    )


def step_flops(spec: GANSpec, batch_size: int) -> StepFlops:
    """FLOPs of one training step (``train_step``) at ``batch_size``; the model is in the module docstring."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    g, d = _costs(spec, "generator"), _costs(spec, "discriminator")
    g_fwd, d_fwd = _forward(g), _forward(d)
    d_bwd_weights = _backward(d, weights=True, to_input=False)
    d_bwd_input = _backward(d, weights=False, to_input=True)
    g_bwd_weights = _backward(g, weights=True, to_input=False)

    def total(*terms: tuple[int, int]) -> tuple[int, int]:
        return sum(t[0] for t in terms), sum(t[1] for t in terms)

    d_update = total(g_fwd, d_fwd, d_fwd, d_bwd_weights, d_bwd_weights)
    penalty = spec.loss.penalty
    data_elems = math.prod(spec.data_shape)
    grad_matmul, grad_elementwise = total(d_fwd, d_bwd_input)
    for site in PENALTY_SITES[penalty]:
        per_element = PENALTY_NORM_PER_ELEMENT + (INTERPOLATE_PER_ELEMENT if site == "interpolates" else 0)
        extra = (PENALTY_PASSES * grad_matmul, PENALTY_PASSES * grad_elementwise + per_element * data_elems)
        d_update = total(d_update, extra)
    g_update = total(g_fwd, d_fwd, d_bwd_input, g_bwd_weights)
    if spec.loss.relativistic:  # G's step also runs D on the real batch (forward only)
        g_update = total(g_update, d_fwd)
    per_sample = total(*([d_update] * spec.n_critic), g_update)

    d_opt = optimizer_flops_per_param(spec.d_optimizer) + (2 if spec.loss.clip_value is not None else 0)
    optimizer = spec.n_critic * d_opt * num_params(spec, "discriminator")
    optimizer += optimizer_flops_per_param(spec.g_optimizer) * num_params(spec, "generator")
    optimizer += spectral_step_flops(spec)  # per call, not per sample: flops_spectral.py
    return StepFlops(
        batch_size=batch_size,
        matmul=batch_size * per_sample[0],
        elementwise=batch_size * per_sample[1] + optimizer,
        per_layer=tuple(layer_flops(spec)),
    )
