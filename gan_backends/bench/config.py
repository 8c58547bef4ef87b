"""What a benchmark runs: one :class:`RunConfig` per subprocess, a :class:`Sweep` of them.

A sweep is the product backend × mode × spec × batch size × precision, on one device with one
thread count and one timing plan. It is written as TOML (``benchmarks/sweeps/*.toml``)::

    specs = ["mlp"]
    batch_sizes = [64, 256]
    precisions = ["float32"]          # float32 (strict IEEE), tf32, bf16 (mixed)
    device = "cpu"
    threads = 2                       # CPU threads of every framework (and CPU affinity)
    timeout_s = 600
    inputs = ["device"]               # "host": also time the step with its input copy
    [modes]                           # backend = its modes; default: every mode of every backend
    torch = ["eager", "compile"]
    [plan]                            # gan_backends.bench.timing.TimingPlan
    warmup = 5
    repeats = 7
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec import SpecError
from .timing import TimingPlan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Benchmark precisions and the spec's ``numerics.matmul_precision`` each one sets.
PRECISIONS = {"float32": "highest", "tf32": "tf32", "bf16": "bf16"}

#: Where a step's inputs come from (see :attr:`RunConfig.inputs`).
INPUTS = ("device", "host")

#: Every mode of every framework, compiled first (the registry knows them without importing).
ALL_MODES: dict[str, tuple[str, ...]] = {
    "torch": ("eager", "compile"),
    "tensorflow": ("xla", "function", "eager"),
    "jax": ("jit", "eager"),
}


@dataclass(frozen=True)
class RunConfig:
    """One measurement: a backend in one mode on one spec, batch size, precision and device."""

    backend: str
    mode: str
    spec: str  # preset name or spec file
    batch_size: int
    precision: str = "float32"
    loss: str | None = None
    device: str | None = None  # None: the framework's default (GPU when present)
    threads: int | None = None  # None: each framework's own default
    seed: int = 0
    plan: TimingPlan = TimingPlan()
    #: ``device``: the batch is placed on the device once, before timing (the training step
    #: alone); ``host``: every step copies it from NumPy first (step + input transfer).
    inputs: str = "device"

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise SpecError(f"inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")

    @property
    def key(self) -> str:
        """What identifies a result for resuming a sweep (the plan is not part of it)."""
        loss = f"/{self.loss}" if self.loss else ""
        inputs = "/host-inputs" if self.inputs == "host" else ""
        return (
            f"{self.backend}/{self.mode}/{self.spec}{loss}/b{self.batch_size}/{self.precision}"
            f"/{self.device or 'default'}/t{self.threads or 'default'}{inputs}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        data["plan"] = TimingPlan(**data.get("plan", {}))
        return cls(**data)


@dataclass(frozen=True)
class Sweep:
    specs: tuple[str, ...] = ("mlp",)
    batch_sizes: tuple[int, ...] = (64, 256)
    precisions: tuple[str, ...] = ("float32",)
    modes: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(ALL_MODES))
    loss: str | None = None
    device: str | None = None
    threads: int | None = None
    seed: int = 0
    timeout_s: float = 600.0
    plan: TimingPlan = TimingPlan()
    inputs: tuple[str, ...] = ("device",)

    def __post_init__(self) -> None:
        for source in self.inputs:
            if source not in INPUTS:
                raise SpecError(f"sweep: unknown inputs {source!r}; known: {', '.join(INPUTS)}")
        for p in self.precisions:
            if p not in PRECISIONS:
                raise SpecError(f"sweep: unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
        for backend, modes in self.modes.items():
            if backend not in ALL_MODES:
                raise SpecError(f"sweep: unknown backend {backend!r}; known: {', '.join(ALL_MODES)}")
            unknown = [m for m in modes if m not in ALL_MODES[backend]]
            if unknown:
                raise SpecError(f"sweep: backend {backend!r} has no mode {unknown[0]!r}; modes: {ALL_MODES[backend]}")
        if any(b < 1 for b in self.batch_sizes) or not self.batch_sizes:
            raise SpecError(f"sweep: batch sizes must be ≥ 1, got {self.batch_sizes}")

    def runs(self) -> list[RunConfig]:
        """Every configuration, spec by spec and batch by batch, backends side by side."""
        out = []
        axes = itertools.product(self.specs, self.precisions, self.batch_sizes, self.inputs)
        for spec, precision, batch, inputs in axes:
            for backend, modes in self.modes.items():
                for mode in modes:
                    out.append(
                        RunConfig(
                            backend,
                            mode,
                            spec,
                            batch,
                            precision,
                            self.loss,
                            self.device,
                            self.threads,
                            self.seed,
                            self.plan,
                            inputs,
                        )
                    )
        return out

    def replace(self, **changes: Any) -> Sweep:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "sweep") -> Sweep:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        for name in ("specs", "batch_sizes", "precisions", "inputs"):
            if name in data:
                data[name] = tuple(data[name])
        if "modes" in data:
            data["modes"] = {b: tuple(m) for b, m in data["modes"].items()}
        if "plan" in data:
            data["plan"] = TimingPlan(**data["plan"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SpecError(f"sweep file {path}: {exc}") from None
        return cls.from_dict(data, source=f"sweep file {path}")


SWEEPS = Path(__file__).with_name("sweeps")


def default_sweep(device: str) -> Sweep:
    """The built-in sweep for ``cpu`` or ``gpu`` (``gan_backends/bench/sweeps/*.toml``)."""
    if device not in ("cpu", "gpu"):
        raise SpecError(f"built-in sweeps: cpu, gpu; got {device!r}")
    return Sweep.load(SWEEPS / f"{device}.toml")
