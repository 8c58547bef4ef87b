"""The proof that data parallelism changes nothing it should not: N devices against one.

:func:`check_framework` draws each case's parameters and global batch in NumPy, runs the
N-device steps in a subprocess (:mod:`.run`), computes what they must equal with the same
framework's single-device backend in this process (:mod:`.reference`), and returns one
:class:`Row` per compared quantity (the worst tensor of each kind), judged against the
project's float32 bounds (:mod:`gan_backends.check.tolerances`):

- parameters: ``param`` (1e-5 relative); a tensor that starts at zero (biases, BatchNorm
  shifts) is after one step nothing but its update, so it is judged by the ``update`` bound of
  a lock-step update (1e-4): Adam's ``m / (sqrt(v) + eps)`` amplifies the rounding of a tiny
  gradient, which a different summation order (N partial sums) changes;
- running statistics: ``value`` (3e-6), they are forward values;
- loss terms: ``loss`` (2e-6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..backends.base import TrainBatch
from ..check.tolerances import tolerance
from ..params import ParamTree, init_params
from ..spec import GANSpec
from . import BatchNormMode, batchnorm_mode, with_batchnorm
from .reference import StepResult, global_step, per_device_step, relative_error
from .run import read_results, write_inputs


@dataclass(frozen=True)
class Case:
    """One data-parallel step to check: a spec (with its cross-device BatchNorm), its inputs."""

    name: str
    spec: GANSpec
    params: ParamTree
    batch: TrainBatch

    @property
    def batchnorm(self) -> BatchNormMode:
        return batchnorm_mode(self.spec)


@dataclass(frozen=True)
class Row:
    case: str
    kind: str  # params / buffers / losses
    against: str  # "global" (one device, whole batch) or "per_device" (the reference of reference.py)
    error: float
    worst: str
    bound: float

    @property
    def passed(self) -> bool:
        return self.error <= self.bound


def draw_inputs(spec: GANSpec, batch_size: int, seed: int = 0) -> tuple[ParamTree, TrainBatch]:
    """Parameters from the spec's initialiser and a global batch, drawn once in NumPy (real data
    in [-1, 1] like a tanh generator's output; ``alpha`` in [0, 1) when the loss needs it)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.numerics.dtype)
    n = spec.n_critic
    draw = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    alpha = rng.random((n, batch_size)).astype(dtype) if spec.loss.penalty == "wgan_gp" else None
    batch = TrainBatch(
        real=np.tanh(draw(n, batch_size, *spec.data_shape)),
        z_d=draw(n, batch_size, spec.latent_dim),
        z_g=draw(batch_size, spec.latent_dim),
        alpha=alpha,
    )
    return init_params(spec, seed), batch


def standard_cases(devices: int, batch_per_device: int = 8, seed: int = 0) -> list[Case]:
    """The cases every framework is checked on: the MLP GAN (no BatchNorm: both modes are the
    global step), ``dcgan-small`` (BatchNorm in G and D) in both modes, on the same inputs, and a
    small MLP WGAN-GP with ``n_critic = 3`` in float64."""
    from ..presets import get_preset
    from ..spec import Numerics

    cases = []
    for preset, modes in (("mlp", ("sync",)), ("dcgan-small", ("sync", "per_device"))):
        spec = get_preset(preset)
        params, batch = draw_inputs(spec, batch_per_device * devices, seed)
        cases += [Case(f"{preset}-{mode}", with_batchnorm(spec, mode), params, batch) for mode in modes]
    # Several D updates per step and a penalty (a second-order gradient per device), in float64:
    # in float32 the third of three Adam updates already amplifies summation-order rounding in
    # near-zero gradient elements past the float32 bounds (1.6e-4 measured, torch and TF, with 4
    # devices), while in float64 the N-device step is the one-device step within the float64 bounds.
    # BatchNorm inside residual blocks (sngan-small's G), synchronised: a block's layers are not
    # the network's own, and an engine that converts only those would leave them per device.
    spec = with_batchnorm(get_preset("sngan-small").replace(n_critic=1), "sync")
    params, batch = draw_inputs(spec, batch_per_device * devices, seed)
    cases.append(Case("sngan-small-blocks-sync", spec, params, batch))
    spec = get_preset("mlp", loss="wgan-gp", g_hidden=(32,), d_hidden=(32,))
    spec = spec.replace(n_critic=3, numerics=Numerics(dtype="float64"))
    params, batch = draw_inputs(spec, batch_per_device * devices, seed)
    return [*cases, Case("mlp-wgan-gp-ncritic3-float64", spec, params, batch)]


class DataParallelRun:
    """Every case's N-device step in one subprocess of :mod:`.run`, started at construction so
    that the caller can compute the references meanwhile; :meth:`results` waits for it."""

    def __init__(self, framework: str, cases: list[Case], devices: int, *, platform: str | None = "cpu"):
        self.framework = framework
        self._tmp = tempfile.TemporaryDirectory(prefix="gan-dp-")
        tmp = self._tmp.name
        inputs, config, self._out = Path(tmp, "inputs.npz"), Path(tmp, "config.json"), Path(tmp, "out.npz")
        write_inputs(inputs, {c.name: (c.params, c.batch) for c in cases})
        entries = [{"name": c.name, "spec": c.spec.to_dict()} for c in cases]
        settings = {"framework": framework, "devices": devices, "platform": platform, "inputs": str(inputs)}
        config.write_text(json.dumps({**settings, "cases": entries}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "gan_backends.parallel.run", str(config), str(self._out)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)

    def results(self, timeout_s: float = 300.0) -> tuple[dict[str, StepResult], dict]:
        try:
            _, stderr = self._proc.communicate(timeout=timeout_s)
            if self._proc.returncode != 0:
                raise RuntimeError(
                    f"{self.framework} data-parallel run failed ({self._proc.returncode}):\n{stderr[-4000:]}"
                )
            return read_results(self._out)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._tmp.cleanup()


def _root() -> str:
    return str(Path(__file__).resolve().parents[2])


def expected_steps(framework: str, cases: list[Case], devices: int) -> dict[str, dict[str, StepResult]]:
    """What each case's N-device step is held against, from the single-device backend (in its
    ``eager`` mode for TensorFlow, op by op; JAX's eager mode is slower than compiling):
    ``global`` (its ``train_step`` on the whole batch, computed once per distinct inputs) and,
    for per-device BatchNorm, ``per_device``
    (:func:`~gan_backends.parallel.reference.per_device_step`)."""
    cls = get_backend(framework)
    mode = "eager" if framework == "tensorflow" else None
    out: dict[str, dict[str, StepResult]] = {}
    done: dict[tuple[str, int, int], StepResult] = {}
    for case in cases:
        # The one-device step ignores the cross-device BatchNorm choice: computed once per spec.
        key = (with_batchnorm(case.spec, "sync").to_json(), id(case.params), id(case.batch))
        if key not in done:
            done[key] = global_step(cls(case.spec, case.params, mode=mode), case.batch)
        out[case.name] = {"global": done[key]}
        if case.batchnorm == "per_device" and case.spec.has_buffers():
            out[case.name]["per_device"] = per_device_step(cls(case.spec, case.params, mode=mode), case.batch, devices)
    return out


def compare(case: Case, result: StepResult, expected: StepResult, against: str) -> list[Row]:
    """Rows for parameters, running statistics and loss terms: the worst tensor of each."""
    tol = tolerance(case.spec.numerics.dtype, case.spec.numerics.dtype, case.spec.numerics.matmul_precision)
    rows = []
    worst = max((_param_error(case, result, expected, n, tol) for n in expected.params), key=lambda r: r[0] / r[2])
    rows.append(Row(case.name, "params", against, worst[0], worst[1], worst[2]))
    if expected.buffers:
        err, name = max((relative_error(result.buffers[n], expected.buffers[n]), n) for n in expected.buffers)
        rows.append(Row(case.name, "buffers", against, err, name, tol.value))
    err, name = max((relative_error(result.losses[k], expected.losses[k]), k) for k in expected.losses)
    rows.append(Row(case.name, "losses", against, err, name, tol.loss))
    return rows


def _param_error(case: Case, result: StepResult, expected: StepResult, name: str, tol) -> tuple[float, str, float]:
    bound = tol.param if np.any(case.params[name]) else tol.update
    return relative_error(result.params[name], expected.params[name]), name, bound


def check_framework(framework: str, cases: list[Case], devices: int) -> tuple[list[Row], dict]:
    """Run the cases on ``devices`` devices and compare: for ``sync`` (or no BatchNorm) with the
    global one-device step; for ``per_device`` with :func:`per_device_step`, plus a ``global`` row
    whose error is expected to be large (the modes must really differ)."""
    run = DataParallelRun(framework, cases, devices)  # runs while the references are computed here
    try:
        expected = expected_steps(framework, cases, devices)
    finally:
        results, meta = run.results()
    rows = []
    for case in cases:
        for against, step in expected[case.name].items():
            rows += compare(case, results[case.name], step, against)
    return rows, meta


__all__ = [
    "Case",
    "Row",
    "check_framework",
    "compare",
    "draw_inputs",
    "expected_steps",
    "DataParallelRun",
    "standard_cases",
]
