"""The hand-written baselines of ``benchmarks/overhead.py`` (``benchmarks/baselines/``) train,
and do our step's math: same parameters and inputs give our backend's first-step D loss."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend

from gan_backends import get_preset, init_params
from gan_backends.backends import TrainBatch, get_backend

ROOT = Path(__file__).resolve().parents[1]

#: Baseline module and our backend's mode matching each baseline option set.
CASES = {
    "torch": ("torch_loop", {}, "eager"),
    "tensorflow": ("tensorflow_loop", {"jit_compile": False}, "function"),
    "jax": ("jax_loop", {}, "jit"),
}


def baseline(framework: str):
    require_backend(framework)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.baselines.{CASES[framework][0]}")


def draw(seed: int, batch: int = 16) -> TrainBatch:
    rng = np.random.default_rng(seed)
    return TrainBatch(
        real=rng.uniform(-1, 1, (1, batch, 784)).astype(np.float32),
        z_d=rng.standard_normal((1, batch, 100)).astype(np.float32),
        z_g=rng.standard_normal((batch, 100)).astype(np.float32),
    )


@pytest.mark.parametrize("framework", list(CASES))
def test_baseline_trains(framework):
    module = baseline(framework)
    step, sync = module.make_step(init_params(get_preset("mlp"), 0), draw(1), **CASES[framework][1])
    seen = []
    for _ in range(5):
        out = step()
        sync(out)
        seen.append(module.losses(out))
    values = np.array(seen)
    assert np.isfinite(values).all()
    # Same inputs every step: the D loss falls as D learns them, the G loss moves.
    assert values[-1, 0] < values[0, 0]
    assert values[-1, 1] != values[0, 1]


@pytest.mark.parametrize("framework", list(CASES))
def test_baseline_first_step_matches_backend(framework):
    """The first step's D loss is computed before any update (optimiser form irrelevant); the
    first G loss is after the D update, which is the same Adam step in torch and JAX (optax's
    Adam is torch's form) but Keras' epsilon-hat Adam in TensorFlow."""
    module = baseline(framework)
    name, options, mode = CASES[framework]
    spec = get_preset("mlp")
    params, batch = init_params(spec, 3), draw(4)
    ours = get_backend(framework)(spec, params, mode=mode).train_step(batch)
    d_loss, g_loss = module.losses(module.make_step(params, batch, **options)[0]())
    assert d_loss == pytest.approx(ours["d_loss"], rel=1e-5)
    assert g_loss == pytest.approx(ours["g_loss"], rel=1e-5 if framework != "tensorflow" else 1e-3)
