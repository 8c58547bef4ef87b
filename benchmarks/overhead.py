"""What our backends' abstraction costs: our step against a hand-written idiomatic loop.

For each framework, in its own subprocess, our backend in its compiled or best modes (torch
``eager`` and ``compile``; tensorflow ``xla`` and ``function``; jax ``jit``) and the matching
baseline of ``benchmarks/baselines/`` (same parameters, same batch, same work) are timed with
:func:`gan_backends.bench.timing.time_interleaved`: their blocks alternate (A B A B ...), so a
noisy neighbour slows both alike. A run is every (mode, batch size) once; ``--runs`` repeats it
in the same process on the same built steps (compilation is paid once, in run 0's first step),
with the order of the pair swapped every run. The figure is the median over runs of
``suite median step time / baseline median step time``.

Threads: the child sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` before importing a framework,
torch's and TensorFlow's intra/inter-op pools (our backends' ``configure_threads``), and pins
the process to ``--threads`` CPUs when the machine has more. XLA's CPU runtime (jax, TF
``jit_compile``) has no thread-count knob: its pool follows the process's CPU affinity.

    PYTHONPATH=. python benchmarks/overhead.py            # batch 64 and 256, 3 runs (~3-4 min on 2 cores)
    PYTHONPATH=. python benchmarks/overhead.py --quick    # batch 64, 1 run: a smoke test

Writes ``benchmarks/results/overhead/<device>[-quick].json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gan_backends.bench.worker import cpu_cores, pinned, process_environment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "overhead"
SPEC = "mlp"

#: framework -> (baseline module, [(our mode, baseline options)]), compiled modes first.
CASES: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    "torch": ("torch_loop", [("eager", {"compile": False}), ("compile", {"compile": True})]),
    "tensorflow": ("tensorflow_loop", [("xla", {"jit_compile": True}), ("function", {"jit_compile": False})]),
    "jax": ("jax_loop", [("jit", {})]),
}

#: What each pairing compares, recorded with the results.
NOTES = {
    ("torch", "eager"): "Adam(fused=True) both",
    ("torch", "compile"): "torch.compile(G), torch.compile(D), dynamic=False; optimiser eager, fused",
    ("tensorflow", "xla"): "tf.function(jit_compile=True); ours torch-form Adam, baseline Keras Adam",
    ("tensorflow", "function"): "tf.function; ours torch-form Adam, baseline Keras Adam",
    ("jax", "jit"): "jax.jit of the whole step, state donated on accelerators only",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the child: one framework -----------------------------------------------------------------


def describe_threads(threads: int) -> dict[str, Any]:
    """The child's thread settings: its environment and CPU affinity were set by the parent
    before the interpreter started (gan_backends.bench.worker's, as for `gan-backends bench`)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"threads": threads, "cpu_affinity": affinity}


class FirstOutputs:
    """``step`` that keeps its first call's outputs (run 0 only: the losses are compared)."""

    def __init__(self, step):
        self.step, self.first = step, None

    def __call__(self):
        out = self.step()
        if self.first is None:
            self.first = out
        return out


def child(framework: str, batch_sizes: list[int], runs: int, threads: int, seed: int, plan_args: dict) -> dict:
    settings = describe_threads(threads)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    import numpy as np

    from gan_backends import get_preset, init_params
    from gan_backends.backends import TrainBatch, get_backend
    from gan_backends.bench.timing import TimingPlan, time_interleaved
    from gan_backends.environment import environment

    backend_cls = get_backend(framework)
    settings["framework"] = backend_cls.configure_threads(threads)
    if framework in ("jax", "tensorflow"):
        settings["xla_cpu"] = "no thread knob: XLA's CPU pool follows the CPU affinity"
    module_name, modes = CASES[framework]
    baseline = importlib.import_module(f"benchmarks.baselines.{module_name}")
    plan = TimingPlan(**plan_args)
    spec = get_preset(SPEC)
    params = init_params(spec, seed)

    entries = []
    for batch_size in batch_sizes:
        rng = np.random.default_rng([seed, batch_size])
        batch = TrainBatch(
            real=rng.uniform(-1.0, 1.0, (1, batch_size, 784)).astype(np.float32),
            z_d=rng.standard_normal((1, batch_size, 100)).astype(np.float32),
            z_g=rng.standard_normal((batch_size, 100)).astype(np.float32),
        )
        for mode, options in modes:
            ours = backend_cls(spec, params, mode=mode)
            base_step, base_sync = baseline.make_step(params, batch, **options)
            entries.append(
                {
                    "mode": mode,
                    "batch": batch_size,
                    "ours": ours,
                    "suite": (ours.device_step(batch), ours.synchronize),
                    "baseline": (base_step, base_sync),
                    "device": ours.device,
                    "runs": [],
                }
            )

    for run in range(runs):
        for e in entries:
            suite, base = e["suite"], e["baseline"]
            if run == 0:
                suite, base = (FirstOutputs(suite[0]), suite[1]), (FirstOutputs(base[0]), base[1])
            pair = {"suite": suite, "baseline": base}
            order = ["suite", "baseline"] if run % 2 == 0 else ["baseline", "suite"]
            t0 = time.perf_counter()
            timings = time_interleaved({name: pair[name] for name in order}, plan)
            s, b = timings["suite"], timings["baseline"]
            e["runs"].append(
                {
                    "suite_s": s.steady.median,
                    "baseline_s": b.steady.median,
                    "ratio": s.steady.median / b.steady.median,
                    "suite_iqr_s": s.steady.iqr,
                    "baseline_iqr_s": b.steady.iqr,
                    "suite_first_step_s": s.first_step_s,
                    "baseline_first_step_s": b.first_step_s,
                    "order": order,
                    "suite_steps_per_block": s.steps_per_block,
                    "baseline_steps_per_block": b.steps_per_block,
                }
            )
            if run == 0:
                d_ours = e["ours"].read_losses(suite[0].first)["d_loss"]
                d_base = baseline.losses(base[0].first)[0]
                e["first_d_loss"] = {"suite": d_ours, "baseline": d_base, "rel": abs(d_ours - d_base) / abs(d_base)}
            r = e["runs"][-1]
            log(
                f"  {framework}/{e['mode']} b{e['batch']} run {run}: suite {r['suite_s'] * 1e3:.2f} ms, "
                f"baseline {r['baseline_s'] * 1e3:.2f} ms, ratio {r['ratio']:.3f} ({time.perf_counter() - t0:.0f} s)"
            )

    return {
        "framework": framework,
        "settings": settings,
        "environment": environment([framework]),
        "rows": [{k: v for k, v in e.items() if k not in ("ours", "suite", "baseline")} for e in entries],
    }


# -- the parent: one child per framework, then the table ----------------------------------------


def summarise(framework: str, row: dict) -> dict:
    runs = row["runs"]
    return {
        "framework": framework,
        "mode": row["mode"],
        "batch": row["batch"],
        "device": row["device"],
        "baseline_ms": statistics.median(r["baseline_s"] for r in runs) * 1e3,
        "suite_ms": statistics.median(r["suite_s"] for r in runs) * 1e3,
        "ratio": statistics.median(r["ratio"] for r in runs),
        "ratio_min": min(r["ratio"] for r in runs),
        "ratio_max": max(r["ratio"] for r in runs),
        "runs": len(runs),
        "suite_first_step_s": runs[0]["suite_first_step_s"],
        "baseline_first_step_s": runs[0]["baseline_first_step_s"],
        "first_d_loss_rel": row.get("first_d_loss", {}).get("rel"),
        "note": NOTES[(framework, row["mode"])],
    }


def markdown(report: dict) -> str:
    meta, summary = report["meta"], report["summary"]
    command = " ".join(["python benchmarks/overhead.py", *meta["argv"]])
    lines = [
        f"# Overhead of our step against hand-written loops ({meta['device']})",
        "",
        f"Spec `{SPEC}`, float32, {meta['threads']} threads, {meta['runs']} run(s); ratio = suite / baseline median "
        "step time, median over runs (range in brackets). Baselines: `benchmarks/baselines/`.",
        f"Generated by `{command}` at {meta['date']}"
        f" (commit {meta['git_commit'] or '?'}{', dirty tree' if meta['git_dirty'] else ''}).",
        "",
        "| framework | mode | batch | baseline ms | suite ms | ratio | runs | first step s (suite / base) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary:
        spread = f" [{s['ratio_min']:.3f}–{s['ratio_max']:.3f}]" if s["runs"] > 1 else ""
        lines.append(
            f"| {s['framework']} | {s['mode']} | {s['batch']} | {s['baseline_ms']:.2f} | {s['suite_ms']:.2f} | "
            f"{s['ratio']:.3f}{spread} | {s['runs']} | {s['suite_first_step_s']:.2f} / "
            f"{s['baseline_first_step_s']:.2f} | {s['note']} |"
        )
    lines += [
        "",
        "First steps include tracing and compilation (run 0 only; torch.compile's cache persists across processes).",
        "",
        "Versions: " + "; ".join(meta["versions"]),
        "",
    ]
    return "\n".join(lines)


def describe_devices(results: list[dict], summary: list[dict]) -> tuple[str, str]:
    """``(kind, words)``: ``cpu``/``gpu`` for the file name, and the device for the title."""
    devices = {s["device"].lower() for s in summary}
    if any("cuda" in d or "gpu" in d for d in devices):
        gpus = results[0]["environment"].get("gpus") if results else None
        name = gpus[0].get("name", "GPU") if gpus else "GPU"
        return "gpu", name
    cpu = results[0]["environment"].get("cpu_model", "CPU") if results else "CPU"
    return "cpu", f"CPU: {cpu}"


def git_state() -> tuple[str | None, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return commit.strip() or None, bool(dirty.strip())
    except OSError:
        return None, False


def parent(args: argparse.Namespace) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results, failures = [], {}
    for framework in args.frameworks:
        log(f"{framework}: child process ({args.runs} run(s), batch {args.batch_sizes}, {args.threads} threads)")
        out = RESULTS / f".child-{framework}.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--one",
            framework,
            "--child-out",
            str(out),
            "--runs",
            str(args.runs),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
            "--min-block-s",
            str(args.min_block_s),
            "--batch-sizes",
            *map(str, args.batch_sizes),
        ]
        env = {
            **os.environ,
            **process_environment(args.threads),  # thread pools sized before anything loads
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        t0 = time.perf_counter()
        proc = subprocess.run(pinned(command, cpu_cores(args.threads)), env=env, timeout=args.timeout)
        if proc.returncode != 0 or not out.exists():
            failures[framework] = f"child exited with {proc.returncode}"
            log(f"{framework}: FAILED ({failures[framework]})")
            continue
        results.append(json.loads(out.read_text()))
        out.unlink()
        log(f"{framework}: done in {time.perf_counter() - t0:.0f} s")

    summary = [summarise(r["framework"], row) for r in results for row in r["rows"]]
    commit, dirty = git_state()
    kind, device = describe_devices(results, summary)
    meta = {
        "device": device,
        "threads": args.threads,
        "runs": args.runs,
        "batch_sizes": args.batch_sizes,
        "plan": {"warmup": args.warmup, "repeats": args.repeats, "min_block_s": args.min_block_s},
        "seed": args.seed,
        "argv": sys.argv[1:],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": [
            b["version"] for r in results for b in r["environment"]["backends"] if b["name"] == r["framework"]
        ],
    }
    name = args.name or f"{kind}{'-quick' if args.quick else ''}"
    report = {"schema": "gan-backends/overhead-v1", "meta": meta, "summary": summary, "failures": failures}
    report["children"] = results
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
    log(f"wrote {RESULTS / name}.json and .md")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frameworks", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    p.add_argument("--runs", type=int, default=3, help="repeats of the whole comparison (median over runs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per step and run")
    p.add_argument("--min-block-s", type=float, default=0.2)
    p.add_argument("--quick", action="store_true", help="batch 64 only, 1 run: a smoke test")
    p.add_argument("--name", help="output file stem (default: cpu / gpu, with -quick)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per framework child")
    p.add_argument("--render", metavar="JSON", help="only re-render a result JSON as its Markdown table")
    p.add_argument("--one", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.render:
        path = Path(args.render)
        report = json.loads(path.read_text())
        report["meta"]["device"] = describe_devices(report["children"], report["summary"])[1]
        path.write_text(json.dumps(report, indent=2) + "\n")
        table = markdown(report)
        path.with_suffix(".md").write_text(table)
        print(table)
        return 0
    if args.quick:
        args.batch_sizes, args.runs = [64], 1
    if args.one:
        plan = {"warmup": args.warmup, "repeats": args.repeats, "min_block_s": args.min_block_s}
        result = child(args.one, args.batch_sizes, args.runs, args.threads, args.seed, plan)
        Path(args.child_out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
