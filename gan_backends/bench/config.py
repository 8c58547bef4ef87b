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
    devices = [1, 2]                  # data parallel over N devices (each framework's own engine)
    scaling = ["strong", "weak"]      # N devices at the same global batch / at N × the batch
    [modes]                           # backend = its modes; default: every mode of every backend
    torch = ["eager", "compile"]
    [plan]                            # gan_backends.bench.timing.TimingPlan
    warmup = 5
    repeats = 7

With ``measure_peak = true`` the sweep also runs, first, one GEMM of ``peak_size``² per
precision on its device (:data:`PEAK`): the peak a batch sweep's FLOP floor is read against is
measured in the same sweep, under the same threads and load.

With ``devices``, each batch size ``B`` is also run over N devices: *strong* scaling keeps the
global batch ``B`` (``B / N`` rows per device), *weak* scaling keeps ``B`` rows per device
(global batch ``N·B``); ``batch_size`` is always the global batch, and the report reads each
N-device run against the one-device run of the same global (strong) or per-device (weak) batch
(:mod:`gan_backends.bench.scaling`). A built-in sweep is named by its file's stem (``cpu``,
``gpu``, ``batch-cpu``, ``batch-gpu``: ``gan_backends/bench/sweeps/``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import FRAMEWORKS, manifest
from ..errors import parse_device
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

#: How a sweep grows with the device count N: the same global batch, or the same batch per device.
SCALING = ("strong", "weak")

#: Every mode of every framework, from the manifests (known without importing a framework), in
#: the order a sweep runs them. torch's ``compile-cudagraphs`` and ``cuda-graph`` need a CUDA
#: device (unavailable elsewhere).
ALL_MODES: dict[str, tuple[str, ...]] = {name: manifest(name).sweep_modes for name in FRAMEWORKS}


#: The backend name of a sweep's peak measurement: one large GEMM per precision, no GAN
#: (``mode`` "gemm", ``batch_size`` the matrix size); see :mod:`gan_backends.bench.peaks`.
PEAK = "peak"


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
    #: Data parallel over this many devices (``batch_size`` is the global batch), each
    #: framework's own engine (:mod:`gan_backends.parallel`); 1: the backend alone.
    devices: int = 1

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise SpecError(f"inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        if self.devices < 1 or self.batch_size % self.devices:
            raise SpecError(f"batch {self.batch_size} does not split over {self.devices} devices")

    @property
    def is_peak(self) -> bool:
        return self.backend == PEAK

    @property
    def key(self) -> str:
        """What identifies a result for resuming a sweep (the plan is not part of it)."""
        if self.is_peak:
            return (
                f"{PEAK}/gemm{self.batch_size}/{self.precision}/{self.device or 'default'}/t{self.threads or 'default'}"
            )
        loss = f"/{self.loss}" if self.loss else ""
        inputs = "/host-inputs" if self.inputs == "host" else ""
        devices = f"/x{self.devices}" if self.devices > 1 else ""
        return (
            f"{self.backend}/{self.mode}/{self.spec}{loss}/b{self.batch_size}{devices}/{self.precision}"
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
    #: Measure the device's GEMM peak in this sweep (one run per precision, before the others).
    measure_peak: bool = False
    #: The GEMM's size n (2·n³ FLOPs): large enough to reach the peak, small enough to be quick.
    peak_size: int = 2048
    #: Device counts; every count above 1 is a data-parallel run (see the module docstring).
    devices: tuple[int, ...] = (1,)
    scaling: tuple[str, ...] = SCALING

    def __post_init__(self) -> None:
        if self.device is not None:
            parse_device(self.device)
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise SpecError(f"sweep: timeout_s must be a finite number of seconds > 0, got {self.timeout_s!r}")
        if self.peak_size < 1:
            raise SpecError(f"sweep: peak_size must be ≥ 1, got {self.peak_size}")
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
        if not self.devices or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.devices):
            raise SpecError(f"sweep: devices must be counts ≥ 1, got {self.devices}")
        unknown_scaling = [k for k in self.scaling if k not in SCALING]
        if unknown_scaling or not self.scaling:
            raise SpecError(f"sweep: scaling must be among {', '.join(SCALING)}, got {self.scaling}")
        if any(n > 1 for n in self.devices) and 1 not in self.devices:
            raise SpecError("sweep: devices needs 1 beside the larger counts: scaling is read against one device")

    def global_batches(self, batch: int) -> list[tuple[int, int]]:
        """``(devices, global batch)`` of every run at sweep batch ``batch``: one device at
        ``batch``; N devices at ``batch`` (strong, where N divides it) and at ``N·batch`` (weak)."""
        out = []
        for n in self.devices:
            sizes = [batch] if n == 1 else []
            if n > 1 and "strong" in self.scaling and batch % n == 0:
                sizes.append(batch)
            if n > 1 and "weak" in self.scaling:
                sizes.append(batch * n)
            out += [(n, size) for size in sizes if (n, size) not in out]
        return out

    def runs(self) -> list[RunConfig]:
        """The peak measurements first (with ``measure_peak``), then every configuration, spec by
        spec and batch by batch, backends side by side."""
        out = []
        if self.measure_peak:
            for precision in self.precisions:
                out.append(
                    RunConfig(
                        PEAK, "gemm", "gemm", self.peak_size, precision, None, self.device, self.threads, 0, self.plan
                    )
                )
        axes = itertools.product(self.specs, self.precisions, self.batch_sizes, self.inputs)
        seen = set()
        for spec, precision, batch, inputs in axes:
            for devices, size in self.global_batches(batch):
                for backend, modes in self.modes.items():
                    for mode in modes:
                        run = RunConfig(
                            backend,
                            mode,
                            spec,
                            size,
                            precision,
                            self.loss,
                            self.device,
                            self.threads,
                            self.seed,
                            self.plan,
                            inputs,
                            devices,
                        )
                        if run.key not in seen:  # weak at B and strong at 2B: the same run
                            seen.add(run.key)
                            out.append(run)
        return out

    def replace(self, **changes: Any) -> Sweep:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_overrides(
        self,
        *,
        backends: list[str] | None = None,
        modes: dict[str, str] | None = None,
        warmup: int | None = None,
        repeats: int | None = None,
        min_block_s: float | None = None,
        **changes: Any,
    ) -> Sweep:
        """This sweep with a command line's overrides, checked as a sweep file is.

        ``backends`` keeps only those backends (each with the sweep's modes, none where the
        sweep has no entry for it); ``modes`` (backend -> mode) narrows a backend to that one
        mode, or adds it. ``warmup``, ``repeats`` and ``min_block_s`` change the timing plan
        (unset or 0: the sweep's own); every other field (``specs``, ``batch_sizes``,
        ``device``, ...) is replaced where not ``None``.
        """
        chosen = dict(self.modes)
        if backends is not None:
            chosen = {n: chosen.get(n, ()) for n in backends}
        picked = modes or {}
        chosen = {
            **{b: (picked[b],) if b in picked else m for b, m in chosen.items()},
            **{b: (m,) for b, m in picked.items()},
        }
        timing = {"warmup": warmup, "repeats": repeats, "min_block_s": min_block_s}
        plan = dataclasses.replace(self.plan, **{k: v for k, v in timing.items() if v})
        return Sweep.from_dict(
            {
                **dataclasses.asdict(self),
                "modes": chosen,
                "plan": dataclasses.asdict(plan),
                **{k: v for k, v in changes.items() if v is not None},
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "sweep") -> Sweep:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        for name in ("specs", "batch_sizes", "precisions", "inputs", "devices", "scaling"):
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
        """A sweep file, or a built-in sweep by name (``batch-cpu``) where no such file exists."""
        path = Path(path)
        if not path.exists() and path.suffix == "" and (SWEEPS / f"{path}.toml").exists():
            path = SWEEPS / f"{path}.toml"
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SpecError(f"sweep file {path}: {exc}") from None
        return cls.from_dict(data, source=f"sweep file {path}")


SWEEPS = Path(__file__).with_name("sweeps")


def builtin_sweeps() -> list[str]:
    """The names of the built-in sweeps (``gan_backends/bench/sweeps/*.toml``)."""
    return sorted(p.stem for p in SWEEPS.glob("*.toml"))


def default_sweep(device: str) -> Sweep:
    """A built-in sweep by name: ``cpu`` or ``gpu`` (the default of ``gan-backends bench`` on
    such a machine), or another file of ``gan_backends/bench/sweeps/`` (``batch-cpu``)."""
    if device not in builtin_sweeps():
        raise SpecError(f"built-in sweeps: {', '.join(builtin_sweeps())}; got {device!r}")
    return Sweep.load(SWEEPS / f"{device}.toml")
