r"""FLOPs of spectral normalisation in one training step (:mod:`gan_backends.spec.spectral`).

Per call, not per sample: the power iteration and σ run on the kernel matrix ``W`` ``(out,
fan_in)``, ``N = out · fan_in``, once per network call whatever the batch size, so they are
counted with the elementwise FLOPs, which are affine in the batch size already (the optimiser
update is also per step). ``normalize`` of ``m`` values costs ``3m + 2`` (square, add, divide;
sqrt, max)::

    forward   it · (2N + 3·fan_in + 2  +  2N + 3·out + 2)     v = normalize(Wᵀu), u = normalize(W v)
              + 2N + 2·out                                   σ = u · (W v)
              + N                                            W / σ
    backward  6N   (⟨G, W_sn⟩: 2N; u vᵀ, times it, G minus it, divided by σ: 4N; only when the
                    call's weights get gradients)

``it`` = ``n_power_iterations``. Training calls per step (docs/conv-gans.md): D's layers run
``2 · n_critic`` calls with weight gradients (``D(real)``, ``D(fake)``) and 1 without
(``D(G(z))`` in G's update; +1 for a relativistic loss's ``D(real)``); G's layers ``n_critic``
without (the D updates' fakes) and 1 with.
"""

from __future__ import annotations

from gan_backends.spec import GANSpec, Layer, Shape, walk
from gan_backends.spec.spectral import matrix_shape


def call_flops(layer: Layer, in_shape: Shape) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of one training call's spectral norm of ``layer`` (0, 0 without it)."""
    sn = getattr(layer, "spectral_norm", None)
    if sn is None:
        return 0, 0
    out, fan_in = matrix_shape(layer.param_shapes(in_shape)["kernel"])
    n = out * fan_in
    forward = sn.n_power_iterations * (4 * n + 3 * (fan_in + out) + 4) + 3 * n + 2 * out
    return forward, 6 * n


def step_flops(spec: GANSpec) -> int:
    """Spectral-norm FLOPs of one ``train_step`` (the module docstring's model)."""
    calls = {
        # (calls with weight gradients, calls without)
        "discriminator": (2 * spec.n_critic, 1 + int(spec.loss.relativistic)),
        "generator": (1, spec.n_critic),
    }
    total = 0
    for net, (with_grads, without) in calls.items():
        for _, layer, in_shape in walk(spec.layers(net), spec.input_shape(net), net):  # blocks' layers too
            forward, backward = call_flops(layer, in_shape)
            total += (with_grads + without) * forward + with_grads * backward
    return total
