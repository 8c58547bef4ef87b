"""Keras' Adam (epsilon-hat) and RMSprop (eps inside the root, lr inside the momentum buffer) as
spec options (``form="keras"``) in the reference and every stack (issue 18, point 4).

The reference's updates are held against Keras' own optimisers (``keras.optimizers.Adam`` and
``RMSprop`` applied to float64 variables), each stack against the reference with the check on
the MLP (forward, gradients, a free-running and a lock-step step, the slots handed across).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from gan_backends import get_preset
from gan_backends.backends.numpy.optim import make_optimizer
from gan_backends.check import run_check
from gan_backends.spec import AdamSpec, RMSpropSpec, SpecError

STEPS = 6
#: Hyper-parameters exact in float32: Keras applies some of them (learning rate, beta_2) at
#: float32 precision even to float64 variables (beta_2 = 0.99 moves the update by 5e-7 of itself),
#: so only with these is a float64 comparison with Keras exact.
LR, BETA1, BETA2, RHO = 2.0**-7, 0.5, 1.0 - 2.0**-10, 0.875


def _gradients(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # gradients of several sizes, one row near zero (where eps's placement matters most)
    return [rng.normal(0, 1, (3, 4)) * np.array([[1e-5], [1.0], [30.0]]) for _ in range(STEPS)]


def _reference(spec, start: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    opt = make_optimizer(spec, ["w"], {"w": start.shape})
    params = {"w": start.copy()}
    for g in grads:
        opt.update(params, {"w": g})
    return params["w"]


def _keras(optimizer, start: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    import keras

    var = keras.Variable(start.copy(), dtype="float64")
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g, dtype="float64")], [var])
    return np.asarray(var.numpy())


@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_keras_form_adam_is_keras_adam(eps):
    require_backend("tensorflow")
    import keras

    start, grads = np.linspace(-1, 1, 12).reshape(3, 4), _gradients()
    spec = AdamSpec(lr=LR, beta1=BETA1, beta2=BETA2, eps=eps, form="keras")
    want = _keras(keras.optimizers.Adam(learning_rate=LR, beta_1=BETA1, beta_2=BETA2, epsilon=eps), start, grads)
    np.testing.assert_allclose(_reference(spec, start, grads), want, rtol=1e-12, atol=1e-15)
    # torch's form with the same eps is another optimiser: the near-zero gradients' row moves otherwise
    torch_form = _reference(AdamSpec(lr=LR, beta1=BETA1, beta2=BETA2, eps=eps), start, grads)
    assert np.max(np.abs((torch_form - start) - (want - start))) > 1e-4


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_keras_form_rmsprop_is_keras_rmsprop(centered, momentum):
    require_backend("tensorflow")
    import keras

    start, grads = np.linspace(-1, 1, 12).reshape(3, 4), _gradients(1)
    spec = RMSpropSpec(lr=LR, alpha=RHO, eps=1e-7, momentum=momentum, centered=centered, form="keras")
    keras_opt = keras.optimizers.RMSprop(learning_rate=LR, rho=RHO, epsilon=1e-7, momentum=momentum, centered=centered)
    want = _keras(keras_opt, start, grads)
    np.testing.assert_allclose(_reference(spec, start, grads), want, rtol=1e-12, atol=1e-15)
    torch_form = _reference(RMSpropSpec(lr=LR, alpha=RHO, eps=1e-7, momentum=momentum, centered=centered),
                            start, grads)  # fmt: skip
    assert np.max(np.abs(torch_form - want)) > 1e-6


def test_a_keras_form_with_weight_decay_is_refused():
    with pytest.raises(SpecError, match="Keras' weight decay is decoupled"):
        AdamSpec(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=1e-4, form="keras")
    with pytest.raises(SpecError, match="rmsprop.form must be 'torch' or 'keras'"):
        RMSpropSpec(lr=1e-3, form="optax")


#: The two Keras forms, and RMSprop's centred momentum variant, over the MLP's two optimisers.
KERAS_OPTIMIZERS = {
    "adam+rmsprop": (AdamSpec(lr=2e-3, beta1=0.5, beta2=0.999, eps=1e-7, form="keras"),
                     RMSpropSpec(lr=1e-3, alpha=0.9, eps=1e-7, form="keras")),
    "rmsprop-centered-momentum": (RMSpropSpec(lr=1e-3, alpha=0.9, eps=1e-7, momentum=0.5, centered=True,
                                              form="keras"),
                                  AdamSpec(lr=1e-3, beta1=0.0, beta2=0.9, eps=1e-3, form="keras")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(KERAS_OPTIMIZERS))
def test_check_agrees_with_the_keras_forms(framework, case):
    require_backend(framework)
    g_opt, d_opt = KERAS_OPTIMIZERS[case]
    spec = get_preset("mlp-2d").replace(g_optimizer=g_opt, d_optimizer=d_opt)
    report = run_check(spec, [framework, "numpy"], steps=3, batch_size=16, seed=2)
    (pair,) = report.pairs
    assert report.passed, [r.quantity for r in pair.rows if not r.passed] or report.lock_rows
