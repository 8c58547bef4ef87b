"""``gan-backends train --devices 2``: the data-parallel run trains what the one-device run trains.

Each framework's run is the CLI in a process of its own (its engine must be set up before the
framework starts: XLA host devices, TF logical CPUs, torch ranks), on dcgan-small (BatchNorm in
G and D, synchronised: the spec's default) with a global batch of 16. It trains 2 steps, then
resumes from its checkpoint to step 3; the checkpoint is held against 3 steps of the framework's
single-device backend in this process, on the same data, noise and seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gan_backends import get_preset
from gan_backends.cli import app
from gan_backends.spec import SpecError
from gan_backends.train import TrainConfig, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
#: Worst relative difference (per tensor, against its largest value) measured after 3 steps:
#: 7.4e-7 (params, TF), 2.7e-7 (running statistics), 8.0e-7 (Adam moments, torch).
BOUND = 1e-5

pytestmark = pytest.mark.long  # launched engines and CLI processes: tens of seconds each


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "gan_backends.cli", "train", *args], capture_output=True, text=True, env=env
    )


def _worst(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> tuple[float, str]:
    assert got.keys() == want.keys()
    errors = {n: float(np.abs(got[n] - want[n]).max() / max(np.abs(want[n]).max(), 1e-30)) for n in want}
    name = max(errors, key=errors.get)
    return errors[name], name


def test_two_devices_train_and_resume_what_one_device_trains(framework, tmp_path):
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).uniform(-1, 1, (256, 16, 16, 1)).astype(np.float32))
    out = tmp_path / "two"
    common = ["--backend", framework, "--spec", "dcgan-small", "--data", str(data), "--batch-size", "16"]
    common += ["--device", "cpu", "--devices", "2", "--out", str(out)]
    first = _cli(*common, "--steps", "2")
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-2000:]
    resumed = _cli(*common, "--steps", "3", "--resume", str(out / "last.safetensors"))
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-2000:]

    one = train(get_preset("dcgan-small"), TrainConfig(framework, str(data), steps=3, batch_size=16), tmp_path / "one")
    a, b = load_checkpoint(out / "last.safetensors"), load_checkpoint(one.checkpoint)
    assert a.meta["step"] == 3 and a.meta["config"]["devices"] == 2
    assert a.optimizer.steps == b.optimizer.steps == {"generator": 3, "discriminator": 3}
    assert _worst(a.params, b.params)[0] < BOUND, _worst(a.params, b.params)
    assert _worst(a.buffers, b.buffers)[0] < BOUND, _worst(a.buffers, b.buffers)
    for slot in b.optimizer.slots:
        assert _worst(a.optimizer.slots[slot], b.optimizer.slots[slot])[0] < BOUND, slot
    assert (out / "losses.csv").read_text().count("\n") == 4  # header and steps 1-3
    assert (out / "samples-000003.png").read_bytes()[:4] == b"\x89PNG"


def test_a_batch_that_does_not_split_or_a_mode_the_engine_does_not_run_is_refused():
    with pytest.raises(SpecError, match="global batch 10 must split evenly over 4 devices"):
        TrainConfig("torch", "ring", steps=1, batch_size=10, devices=4)
    with pytest.raises(SpecError, match="data parallel runs torch in mode 'eager'"):
        TrainConfig("torch", "ring", steps=1, batch_size=8, devices=2, mode="compile")
    with pytest.raises(SpecError, match="no data-parallel engine for backend 'numpy'"):
        TrainConfig("numpy", "ring", steps=1, batch_size=8, devices=2)
    result = CliRunner().invoke(app, ["train", "--data", "ring", "--batch-size", "10", "--devices", "4"])
    assert result.exit_code == 2 and "split evenly" in result.output
