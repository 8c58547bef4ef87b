"""Specs and backends for the conv contract suite (tests/test_conv_contract*.py) and its
framework quirks (tests/test_conv_quirks.py), reached only through the public entry points
(``get_backend``, ``init_params``, the spec), so that the same case runs in every framework.

A layer is tested inside a spec whose generator is ``Reshape(in_shape) -> layer``: the test
chooses the layer's input (the latent vector is that input, flattened) and reads the layer's
output as activation 1, in the canonical NHWC layout, whatever the framework stores.
The scenarios that the quirks re-run in a framework's other modes live here too.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from numeric import (
    batchnorm,
    bf16_product,
    central_difference,
    conv2d,
    conv_input_grad,
    conv_transpose,
    input_gradient,
    rel_l2,
    rel_max_abs,
    running_update,
    softplus,
)

from gan_backends.backends import Backend, TrainBatch, get_backend
from gan_backends.params import init_params
from gan_backends.spec import (
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    ReLU,
    Reshape,
    Tanh,
)

ADAM = AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)
#: A small conv generator: stem, BatchNorm, ReLU, stride-2 transposed conv, tanh; 6×6×1 from 4 latents.
MINI_DCGAN_GENERATOR = (
    Reshape(shape=(1, 1, 4)),
    ConvTranspose2D(filters=4, kernel=3, stride=1, padding="valid", use_bias=False),
    BatchNorm(),
    ReLU(),
    ConvTranspose2D(filters=1, kernel=4, stride=2, padding=1, use_bias=False),
    Tanh(),
)


def user_module(path: Path, code: str, name: str) -> ModuleType:
    """``code`` written to ``path`` and imported as module ``name``: a user's own model file, as
    ``spec-from`` and ``port --model`` read it by path."""
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make(framework: str, spec: GANSpec, params: dict, mode: str | None = None) -> Backend:
    """The framework's backend on the CPU, in ``mode`` (its default when None)."""
    return get_backend(framework)(spec, params, mode=mode, device="cpu")


def randomised(spec: GANSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Parameters with every entry ~ U(-1, 1), biases and BatchNorm shifts included (an
    initialiser's zero bias would let a missing bias add pass)."""
    dtype = np.dtype(spec.numerics.dtype)
    return {k: rng.uniform(-1, 1, v.shape).astype(dtype) for k, v in init_params(spec, 0).items()}


def layer_spec(layer, in_shape: tuple[int, ...], dtype: str = "float64", precision: str = "highest") -> GANSpec:
    """G: ``Reshape(in_shape) -> layer`` (its output is the data); D: ``[Flatten] -> Dense(1)``."""
    out = layer.output_shape(in_shape)
    return GANSpec(
        name="one-layer",
        data_shape=out,
        latent_dim=math.prod(in_shape),
        generator=(Reshape(shape=in_shape), layer),
        discriminator=(Flatten(), Dense(units=1)) if len(out) == 3 else (Dense(units=1),),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype, matmul_precision=precision),  # type: ignore[arg-type]
    )


def layer_output(framework: str, layer, x: np.ndarray, rng, *, training: bool = False, mode=None, **numerics):
    """(the layer's output on ``x`` as the backend computes it, its parameters, the backend)."""
    spec = layer_spec(layer, x.shape[1:], **numerics)
    params = randomised(spec, rng)
    backend = make(framework, spec, params, mode)
    return backend.activations("generator", x.reshape(len(x), -1), training=training)[1], params, backend


def draw(rng: np.random.Generator, spec: GANSpec, batch: int = 4, alpha: bool = False) -> TrainBatch:
    n = spec.n_critic
    return TrainBatch(
        real=rng.uniform(-1, 1, (n, batch, *spec.data_shape)),
        z_d=rng.standard_normal((n, batch, spec.latent_dim)),
        z_g=rng.standard_normal((batch, spec.latent_dim)),
        alpha=rng.uniform(0, 1, (n, batch)) if alpha else None,
    )


def assert_close(got: np.ndarray, want: np.ndarray, bound: float, what: object = None) -> None:
    """Both measures under ``bound``: where the old per-framework files held one assertion in L2
    and another in max-abs, the merged assertion keeps both."""
    assert rel_l2(got, want) < bound, (what, rel_l2(got, want))
    assert rel_max_abs(got, want) < bound, (what, rel_max_abs(got, want))


# -- running statistics: two networks whose every BatchNorm input is computable by hand --------


class BatchNormCase:
    """``conv``: n_critic 1; G ``Dense -> Reshape -> BN(A) -> Tanh`` (image BN after a Dense), D
    ``Conv2D -> BN(B) -> LeakyReLU -> Flatten -> Dense`` (image BN after a bias-free conv).
    ``first``: n_critic 2; G ``Dense(no bias) -> BN(B) -> Reshape`` (vector BN), D ``BN(A) ->
    Flatten -> Dense`` (BN on D's input, so that D's statistics need no D weights between its two
    updates). A and B are the two ``running_var`` conventions, swapped between the cases."""

    def __init__(self, name: str):
        self.name = name
        a, b = ("unbiased", "biased") if name == "conv" else ("biased", "unbiased")
        if name == "conv":
            g = (Dense(units=32), Reshape(shape=(4, 4, 2)), BatchNorm(momentum=0.3, eps=1e-3, running_var=a), Tanh())
            d = (
                Conv2D(filters=3, kernel=3, stride=2, padding="same", use_bias=False),
                BatchNorm(momentum=0.3, eps=1e-3, running_var=b),
                LeakyReLU(slope=0.2),
                Flatten(),
                Dense(units=1),
            )
            shape, latent, n_critic = (4, 4, 2), 3, 1
        else:
            g = (Dense(units=18, use_bias=False), BatchNorm(momentum=0.3, running_var=b), Reshape(shape=(3, 3, 2)))
            d = (BatchNorm(momentum=0.2, eps=1e-3, running_var=a), Flatten(), Dense(units=1))
            shape, latent, n_critic = (3, 3, 2), 4, 2
        self.spec = GANSpec(
            name=f"bn-{name}",
            data_shape=shape,
            latent_dim=latent,
            generator=g,
            discriminator=d,
            g_optimizer=ADAM,
            d_optimizer=ADAM,
            n_critic=n_critic,
            numerics=Numerics(dtype="float64"),
            init=InitSpec(scheme="normal", std=0.3),
        )
        self.g_bn = 2 if name == "conv" else 1
        self.d_bn = 1 if name == "conv" else 0

    def g(self, p, z, stats=None):
        """(G(z), its BatchNorm's input); batch statistics unless ``stats``."""
        i, bn = self.g_bn, self.spec.generator[self.g_bn]
        if self.name == "conv":
            h = (z @ p["generator.0.kernel"] + p["generator.0.bias"]).reshape(-1, 4, 4, 2)
            return np.tanh(batchnorm(h, p[f"generator.{i}.scale"], p[f"generator.{i}.bias"], bn.eps, stats)), h
        h = z @ p["generator.0.kernel"]
        return batchnorm(h, p[f"generator.{i}.scale"], p[f"generator.{i}.bias"], bn.eps, stats).reshape(-1, 3, 3, 2), h

    def d(self, p, x, stats=None):
        """(D(x), its BatchNorm's input)."""
        i, bn = self.d_bn, self.spec.discriminator[self.d_bn]
        if self.name == "conv":
            h = conv2d(x, p["discriminator.0.kernel"], 2, ((0, 1), (0, 1)))
            a = batchnorm(h, p[f"discriminator.{i}.scale"], p[f"discriminator.{i}.bias"], bn.eps, stats)
            a = np.where(a > 0, a, 0.2 * a).reshape(len(x), -1)
            return a @ p["discriminator.4.kernel"] + p["discriminator.4.bias"], h
        a = batchnorm(x, p[f"discriminator.{i}.scale"], p[f"discriminator.{i}.bias"], bn.eps, stats)
        return a.reshape(len(x), -1) @ p["discriminator.2.kernel"] + p["discriminator.2.bias"], x


def check_running_statistics(
    framework: str, case: BatchNormCase, mode: str | None = None, *, every_call: bool = True
) -> None:
    """Only ``train_step`` moves the running statistics, in the documented order: per critic
    update G(z_d[i]), D(real[i]), D(fake) (separate calls, each with its own batch), then G(z_g)
    and D(G(z_g)) with D as updated; inference uses them, training mode the batch's. Without
    ``every_call`` only the order (what a second case adds; each other call compiles a program)."""
    spec, rng = case.spec, np.random.default_rng(1)
    p0 = init_params(spec, 1)
    backend = make(framework, spec, p0, mode)
    g_key, d_key = f"generator.{case.g_bn}.", f"discriminator.{case.d_bn}."
    names = {k + s for k in (g_key, d_key) for s in ("running_mean", "running_var")}
    assert set(backend.get_buffers()) == names
    before = {k: rng.uniform(0.5, 1.5, v.shape) for k, v in backend.get_buffers().items()}
    backend.set_buffers(before)
    batch = draw(rng, spec, batch=5)
    if every_call:
        real, z = batch.real[0], batch.z_g
        backend.loss_terms(real, z)
        backend.gradients(real, z)
        backend.activations("generator", z, training=True)
        backend.activations("discriminator", real, training=True)
        backend.generate(z)
        backend.discriminate(real)
        backend.set_params(p0)
        for name, value in backend.get_buffers().items():
            np.testing.assert_array_equal(value, before[name], err_msg=name)

    terms = backend.train_step(batch)
    p1 = backend.get_params()
    g_stats = (before[g_key + "running_mean"], before[g_key + "running_var"])
    d_stats = (before[d_key + "running_mean"], before[d_key + "running_var"])
    g_bn, d_bn = spec.generator[case.g_bn], spec.discriminator[case.d_bn]
    # G moves only after every D update; D's BatchNorm input needs D's weights only in ``conv``,
    # where n_critic = 1: p0 for the critic update, p1 (D as updated) for G's update.
    for i in range(spec.n_critic):
        fake, h = case.g(p0, batch.z_d[i])
        g_stats = running_update(g_stats, h, g_bn.momentum, g_bn.running_var)
        (l_real, h_real), (l_fake, h_fake) = case.d(p0, batch.real[i]), case.d(p0, fake)
        for h in (h_real, h_fake):
            d_stats = running_update(d_stats, h, d_bn.momentum, d_bn.running_var)
    fake_g, h = case.g(p0, batch.z_g)
    g_stats = running_update(g_stats, h, g_bn.momentum, g_bn.running_var)
    l_g, h = case.d(p1, fake_g)
    d_stats = running_update(d_stats, h, d_bn.momentum, d_bn.running_var)
    if spec.n_critic == 1:  # the loss terms of the (only) D update and of the G update
        assert terms["d_real"] == pytest.approx(np.mean(softplus(-l_real)), rel=1e-12)
        assert terms["d_fake"] == pytest.approx(np.mean(softplus(l_fake)), rel=1e-12)
        assert terms["g_loss"] == pytest.approx(np.mean(softplus(-l_g)), rel=1e-12)
    want = dict(zip([g_key + "running_mean", g_key + "running_var"], g_stats))
    want.update(zip([d_key + "running_mean", d_key + "running_var"], d_stats))
    got = backend.get_buffers()
    assert set(got) == set(want)
    for name, value in want.items():
        assert_close(got[name], value, 1e-13, name)
    if not every_call:
        return

    # Inference normalises with exactly those statistics; training mode with the batch's.
    x = rng.uniform(-1, 1, (3, *spec.data_shape))
    z3 = rng.standard_normal((3, spec.latent_dim))
    assert_close(backend.generate(z3), case.g(p1, z3, g_stats)[0], 1e-13, "generate")
    assert_close(backend.discriminate(x), case.d(p1, x, d_stats)[0], 1e-13, "discriminate")
    assert_close(backend.activations("discriminator", x, training=True)[-1], case.d(p1, x)[0], 1e-13, "training")
    assert_close(backend.activations("discriminator", x)[-1], case.d(p1, x, d_stats)[0], 1e-13, "inference")
    # set_params leaves them alone.
    backend.set_params(p0)
    np.testing.assert_array_equal(backend.get_buffers()[g_key + "running_var"], got[g_key + "running_var"])
    assert_close(backend.generate(z3), case.g(p0, z3, g_stats)[0], 1e-13, "generate after set_params")


# -- gradient penalties: values and true second-order gradients ----------------------------------

PENALTY_CASES = [("wasserstein", "wgan_gp", 10.0), ("non_saturating", "r1", 3.0)]
PADS = ((0, 1), (0, 1))  # 'same', k=3, s=2 on 4 pixels: total (2-1)*2 + 3 - 4 = 1


def penalty_spec(loss: str, penalty: str, weight: float) -> GANSpec:
    return GANSpec(
        name="gp",
        data_shape=(4, 4, 2),
        latent_dim=3,
        generator=(Dense(units=32), Reshape(shape=(4, 4, 2)), Tanh()),
        # tanh, not LeakyReLU: its second derivative is non-zero, so the double backward matters.
        discriminator=(Conv2D(filters=3, kernel=3, stride=2, padding="same"), Tanh(), Flatten(), Dense(units=1)),
        loss=LossSpec(name=loss, penalty=penalty, penalty_weight=weight, norm_eps=1e-12),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.5),
    )


def numpy_losses(spec: GANSpec, p: dict, real, z, alpha) -> dict[str, float]:
    """Every loss term by hand; D's input gradient through the conv's adjoint (no autodiff)."""
    fake = np.tanh(z @ p["generator.0.kernel"] + p["generator.0.bias"]).reshape(-1, 4, 4, 2)
    k, b = p["discriminator.0.kernel"], p["discriminator.0.bias"]
    w, c = p["discriminator.3.kernel"], p["discriminator.3.bias"]

    def d(x):
        return np.tanh(conv2d(x, k, 2, PADS) + b).reshape(x.shape[0], -1) @ w + c

    def d_input_grad(x):  # ∇_x Σ_j D(x_j), by hand
        a = np.tanh(conv2d(x, k, 2, PADS) + b)
        da = np.broadcast_to(w[:, 0], (x.shape[0], w.shape[0])).reshape(a.shape)
        return conv_input_grad(da * (1 - a**2), k, 2, PADS, x.shape[1:3])

    weight = spec.loss.penalty_weight
    l_real, l_fake = d(real), d(fake)
    if spec.loss.penalty == "wgan_gp":
        a = alpha[:, None, None, None]
        s = np.sum(d_input_grad(a * real + (1 - a) * fake) ** 2, axis=(1, 2, 3))
        penalty = weight * np.mean((np.sqrt(s + spec.loss.norm_eps) - 1) ** 2)
    else:
        penalty = 0.5 * weight * np.mean(np.sum(d_input_grad(real) ** 2, axis=(1, 2, 3)))
    if spec.loss.name == "wasserstein":
        d_real, d_fake, g_loss = -np.mean(l_real), np.mean(l_fake), -np.mean(l_fake)
    else:
        d_real, d_fake, g_loss = np.mean(softplus(-l_real)), np.mean(softplus(l_fake)), np.mean(softplus(-l_fake))
    return {
        "d_real": d_real,
        "d_fake": d_fake,
        "d_penalty": penalty,
        "d_loss": d_real + d_fake + penalty,
        "g_loss": g_loss,
    }


def check_penalty(
    framework: str, loss: str, penalty: str, weight: float, mode: str | None = None, *, own_differences: bool = True
) -> None:
    """The penalty's value (by hand, and from finite-difference input gradients of the backend's
    own D) and every weight gradient through it (second order) against central differences of
    the NumPy losses and (``own_differences``, sampled) of the backend's own loss."""
    spec = penalty_spec(loss, penalty, weight)
    params = init_params(spec, 5)
    rng = np.random.default_rng(5)
    real, z, alpha = rng.uniform(-1, 1, (4, 4, 4, 2)), rng.standard_normal((4, 3)), rng.uniform(0, 1, 4)
    backend = make(framework, spec, params, mode)
    want = numpy_losses(spec, params, real, z, alpha)
    assert want["d_penalty"] > 1e-3
    assert backend.loss_terms(real, z, alpha) == pytest.approx(want, rel=1e-12)
    terms, grads = backend.gradients(real, z, alpha)
    assert terms == pytest.approx(want, rel=1e-12)
    assert backend.loss_terms(real, z, alpha) == pytest.approx(terms, rel=1e-14)

    # The penalty from the backend's D, its input gradients taken by finite differences.
    if penalty == "wgan_gp":
        a = alpha[:, None, None, None]
        fake = np.tanh(z @ params["generator.0.kernel"] + params["generator.0.bias"]).reshape(-1, 4, 4, 2)
        x = a * real + (1 - a) * fake
        norms = np.sqrt(np.sum(input_gradient(backend.discriminate, x, h=1e-5) ** 2, axis=(1, 2, 3)) + 1e-12)
        from_fd = weight * np.mean((norms - 1) ** 2)
    else:
        squares = np.sum(input_gradient(backend.discriminate, real, h=1e-5) ** 2, axis=(1, 2, 3))
        from_fd = 0.5 * weight * np.mean(squares)
    assert terms["d_penalty"] == pytest.approx(from_fd, rel=1e-8)

    # Every weight gradient against central differences of the NumPy losses (the penalty really
    # contributes to D's), and sampled ones against differences of the backend's own loss.
    def reference(which: str):  # the term, and the penalty's part of it
        return lambda p: np.array([numpy_losses(spec, p, real, z, alpha)[k] for k in (which, "d_penalty")])

    def own(which: str):
        def loss(p: dict) -> float:
            backend.set_params(p)
            return backend.loss_terms(real, z, alpha)[which]

        return loss

    penalty_part = []
    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        fd = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            fd[index], part = central_difference(reference(which), params, name, index)
            if which == "d_loss":
                penalty_part.append(abs(part))
        assert rel_l2(grad, fd) < 1e-7, name
        for index in np.ndindex(grad.shape):
            assert grad[index] == pytest.approx(fd[index], rel=1e-6, abs=1e-8), (name, index)
        for flat in rng.choice(grad.size, size=min(4, grad.size) if own_differences else 0, replace=False):
            index = np.unravel_index(flat, grad.shape)
            fd_own = central_difference(own(which), params, name, index, h=1e-5)
            assert grad[index] == pytest.approx(fd_own, rel=1e-6, abs=2e-9), (name, index)
    assert max(penalty_part) > 1e-2
    # A training step uses the same penalty on (real[0], G(z_d[0]), alpha[0]).
    backend.set_params(params)
    step = backend.train_step(TrainBatch(real=real[None], z_d=z[None], z_g=z, alpha=alpha[None]))
    assert step["d_penalty"] == pytest.approx(want["d_penalty"], rel=1e-12)


# -- precision ------------------------------------------------------------------------------------

BF16_CASES = [
    (Conv2D(filters=8, kernel=3, stride=2, padding="same"), (6, 6, 16), ((0, 1), (0, 1))),
    (Conv2D(filters=8, kernel=3, stride=1, padding=1), (8, 8, 16), ((1, 1), (1, 1))),
    (ConvTranspose2D(filters=8, kernel=4, stride=2, padding=1), (4, 4, 16), ((1, 1), (1, 1))),
    (ConvTranspose2D(filters=8, kernel=5, stride=2, padding="same"), (6, 6, 16), ((1, 2), (1, 2))),
    (ConvTranspose2D(filters=4, kernel=3, stride=2, padding="same"), (2, 2, 3), ((0, 1), (0, 1))),
]


def check_bf16(framework: str, layer, in_shape, pads, rng, mode=None) -> None:
    """bf16(op(bf16(x), bf16(kernel))) + bias in float32, emulated in NumPy: all but a rare
    product whose float32 accumulation order tips a bf16 rounding are equal, none is more than
    one bf16 step away; and bf16 really was applied."""
    x = rng.standard_normal((4, *in_shape)).astype(np.float32)
    y, params, _ = layer_output(framework, layer, x, rng, mode=mode, dtype="float32", precision="bf16")
    kernel, bias = params["generator.1.kernel"], params["generator.1.bias"]
    if isinstance(layer, Conv2D):
        op = lambda a, k: conv2d(a, k, layer.stride, pads)  # noqa: E731
    else:
        op = lambda a, k: conv_transpose(a, k, layer.stride, pads)  # noqa: E731
    product, exact = bf16_product(op, x, kernel)
    emulated = product + bias
    assert y.dtype == np.float32
    assert_close(y, emulated, 2e-4)
    assert np.mean(y == emulated) > 0.99
    assert np.all(np.abs(y - emulated) <= 2**-7 * np.abs(product) + 1e-6)
    assert rel_l2(y, exact + bias) > 1e-3 and rel_max_abs(y, exact + bias) > 1e-3


def check_float32(framework: str, rng, mode=None) -> None:
    """float32 with 'highest' precision: the float64 product within float32 rounding."""
    layer = Conv2D(filters=8, kernel=3, stride=1, padding="same")
    x = rng.standard_normal((4, 8, 8, 16)).astype(np.float32)
    y, params, _ = layer_output(framework, layer, x, rng, mode=mode, dtype="float32")
    exact = conv2d(x, params["generator.1.kernel"], 1, ((1, 1), (1, 1))) + params["generator.1.bias"]
    assert y.dtype == np.float32 and rel_max_abs(y, exact) < 2e-6
