"""Fault injection with real processes: signals at random steps of a training run and a bench
sweep, and a user's loss that exits, hangs or crashes in losscheck's child. The exit-code
contract and its cases: ``docs/faults.md``; the rest of the suite: ``tests/test_faults.py``.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend
from fault_harness import RUN_SPEC, cli_process, invoke, stop, wait_for

from gan_backends.presets import get_preset
from gan_backends.train import TrainConfig, load_checkpoint, train

# -- signals -------------------------------------------------------------------------------------------


def _train_process(out: Path, *extra: str):
    args = ["train", "--backend", "numpy", "--spec", RUN_SPEC, "--data", "ring", "--batch-size", "8"]
    return cli_process(*args, "--steps", "1000000", "--out", str(out), *extra)


def _uninterrupted(tmp_path: Path, steps: int) -> dict[str, np.ndarray]:
    run = train(get_preset(RUN_SPEC), TrainConfig("numpy", "ring", steps=steps, batch_size=8), tmp_path / "straight")
    return load_checkpoint(run.checkpoint).params


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_a_checkpoint_of_the_step_and_resume_is_the_uninterrupted_run(tmp_path, sig):
    out = tmp_path / "run"
    proc = _train_process(out)
    wait_for(out / "last.safetensors", proc)  # step 0 is written before the loop
    time.sleep(random.Random(sig).uniform(0.3, 1.0))  # some steps in
    proc.send_signal(sig)
    _, stderr = stop(proc)  # a signal not honoured: the run is killed, never left behind
    assert proc.returncode == 130, stderr
    assert f"interrupted: {sig.name} after step" in stderr and f"--resume {out / 'last.safetensors'}" in stderr
    ckpt = load_checkpoint(out / "last.safetensors")
    step = ckpt.meta["step"]
    assert step >= 1 and (out / "losses.json").exists()
    resumed = train(get_preset(RUN_SPEC), TrainConfig("numpy", "ring", steps=step + 3, batch_size=8), out,
                    resume=out / "last.safetensors")  # fmt: skip
    want = _uninterrupted(tmp_path, step + 3)
    got = load_checkpoint(resumed.checkpoint).params
    assert all(np.array_equal(got[name], want[name]) for name in want)


def test_sigkill_mid_run_leaves_a_whole_checkpoint(tmp_path):
    """Killed outright while it checkpoints every step: the file on disk is a whole checkpoint
    (written to a temporary name, then renamed), and the run resumes from it."""
    out = tmp_path / "run"
    proc = _train_process(out, "--checkpoint-every", "1")
    wait_for(out / "last.safetensors", proc)
    time.sleep(random.Random(9).uniform(0.3, 1.0))
    proc.kill()
    proc.communicate(timeout=60)
    step = load_checkpoint(out / "last.safetensors").meta["step"]
    resumed = train(get_preset(RUN_SPEC), TrainConfig("numpy", "ring", steps=step + 2, batch_size=8), out,
                    resume=out / "last.safetensors")  # fmt: skip
    want = _uninterrupted(tmp_path, step + 2)
    got = load_checkpoint(resumed.checkpoint).params
    assert all(np.array_equal(got[name], want[name]) for name in want)


# -- user code at arm's length -------------------------------------------------------------------------

HOSTILE_LOSSES = {
    "exits": "def d_loss(real, fake):\n    raise SystemExit(0)\n",
    "exits_hard": "import os\n\ndef d_loss(real, fake):\n    os._exit(0)\n",
    "hangs": "def d_loss(real, fake):\n    while True:\n        pass\n",
    "crashes": "import ctypes\n\ndef d_loss(real, fake):\n    return ctypes.string_at(0)\n",
}


@pytest.mark.parametrize(
    "behaviour, kind, message",
    [
        ("exits", "user_code", "your loss raised SystemExit(0)"),
        ("exits_hard", "exited", "ended the process (exit status 0) during case"),
        ("hangs", "hang", "did not return within 3 s (case"),
        ("crashes", "crashed", "died of SIGSEGV during case"),
    ],
)
def test_a_loss_that_exits_hangs_or_crashes_is_reported_as_that(tmp_path, behaviour, kind, message):
    """Never a pass: SystemExit(0) or os._exit(0) in a loss would otherwise end the command
    with status 0, a loop would hang it."""
    require_backend("torch")
    source = tmp_path / "hostile.py"
    source.write_text("import torch\n\n" + HOSTILE_LOSSES[behaviour])
    started = time.monotonic()
    result = invoke("losscheck", f"{source}:d_loss", "-f", "torch", "--loss", "hinge", "--role", "d",
                    "--timeout", "3")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"{kind}:" in result.output and message in result.output.replace("\n", " "), result.output
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "source, message",
    [
        ("def d_loss(real, fake)\n    return 0\n", "SyntaxError: expected ':'"),
        ("raise SystemExit(0)\n", "failed to load: SystemExit(0)"),
        (
            "def d_loss(fake):\n    return fake.mean()\n",
            "cannot take the call role d makes: fn(real_logits, fake_logits)",
        ),
    ],
    ids=["syntax", "exit-at-import", "arity"],
)
def test_a_loss_that_cannot_be_called_is_bad_input(tmp_path, source, message):
    require_backend("torch")
    path = tmp_path / "broken.py"
    path.write_text(source)
    result = invoke("losscheck", f"{path}:d_loss", "-f", "torch", "--loss", "hinge", "--role", "d")
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " "), result.output


@pytest.mark.long
def test_bench_interrupted_writes_what_finished_and_the_same_command_resumes(tmp_path):
    """bench, Ctrl-C after the first run, re-run: the finished run is in the tables at once, and
    the re-run measures only what is missing. Three runs: with two, the second (a process of
    its own, a second or two) once finished before the signal under a loaded fresh-clone suite."""
    require_backend("torch")
    out = tmp_path / "bench"
    args = ["bench", "--backends", "torch", "--mode", "torch=eager", "--spec", "tiny", "--batch-sizes", "4,8,16"]
    args += ["--device", "cpu", "--threads", "1", "--warmup", "1", "--repeats", "1", "--min-block", "0.001"]
    args += ["--out", str(out)]
    proc = cli_process(*args)
    results = out / "results.jsonl"
    wait_for(results, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = stop(proc)
    assert proc.returncode == 130, stderr
    done = len(results.read_text().splitlines())
    assert f"interrupted: {done} of 3 runs are in {results}" in stderr.replace("\n", "")
    assert "the same command resumes" in stderr and (out / "summary.md").exists()
    again = cli_process(*args)
    again_out, again_err = stop(again, timeout=300)
    assert again.returncode == 0, again_out + again_err
    assert again_out.count("already recorded") == done
    assert len(results.read_text().splitlines()) == 3
