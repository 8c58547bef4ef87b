"""Fault injection: what a hostile or unlucky user does to every command, and the exit-code contract
(0 done, 1 the answer is "no", 2 bad input, 3 internal error, 130 interrupted) that must hold.

Each case asserts the exit status, a message naming the path, field or problem, and that no file
was lost or left half-written (the bytes of every input compared before and after). The cases
run on the float64 NumPy reference and this project's safetensors files where they can: the
contract is the CLI's, the same whatever framework computes. Signals go to a real process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend
from fault_harness import RUN_SPEC, digest, folder_state, invoke

from gan_backends.params import init_params, save_params
from gan_backends.presets import get_preset
from gan_backends.train import TrainConfig, load_checkpoint, train


@pytest.fixture
def params_file(tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    spec = get_preset("tiny")
    save_params(path, init_params(spec, 0), spec)
    return path


@pytest.fixture
def finished_run(tmp_path) -> Path:
    out = tmp_path / "run"
    train(get_preset(RUN_SPEC), TrainConfig("numpy", "ring", steps=3, batch_size=8), out)
    return out


# -- outputs checked before the work --------------------------------------------------------------


def test_port_refuses_to_write_over_its_source(params_file):
    before = digest(params_file)
    result = invoke("port", params_file, "--spec", "tiny", "--to", "safetensors", "--out", params_file)
    assert result.exit_code == 2, result.output
    assert f"--out {params_file} is the input" in result.output
    assert digest(params_file) == before


def test_port_refuses_an_out_named_for_another_form(tmp_path, params_file):
    out = tmp_path / "victim.pth"
    result = invoke("port", params_file, "--spec", "tiny", "--to", "safetensors", "--out", out)
    assert result.exit_code == 2, result.output
    assert "a torch file's name, but --to safetensors writes safetensors" in result.output.replace("\n", " ")
    assert not out.exists()


def test_port_replaces_an_existing_out_only_when_asked(tmp_path, params_file):
    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"the user's own file")
    result = invoke("port", params_file, "--spec", "tiny", "--to", "safetensors", "--out", out)
    assert result.exit_code == 2 and "exists" in result.output and "--overwrite" in result.output
    assert out.read_bytes() == b"the user's own file"
    again = invoke("port", params_file, "--spec", "tiny", "--to", "safetensors", "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert out.read_bytes() != b"the user's own file"


def test_train_refuses_a_folder_that_holds_a_finished_run(finished_run):
    before = folder_state(finished_run)
    result = invoke("train", "--backend", "numpy", "--spec", RUN_SPEC, "--data", "ring", "--steps", "2",
                    "--batch-size", "8", "--out", finished_run)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--resume" in result.output and "--overwrite" in result.output
    assert folder_state(finished_run) == before
    fresh = invoke("train", "--backend", "numpy", "--spec", RUN_SPEC, "--data", "ring", "--steps", "2",
                   "--batch-size", "8", "--out", finished_run, "--overwrite")  # fmt: skip
    assert fresh.exit_code == 0, fresh.output
    assert load_checkpoint(finished_run / "last.safetensors").meta["step"] == 2
    assert not (finished_run / "samples-000003.png").exists()  # the old run's files went with it


def test_an_unwritable_report_path_is_refused_before_the_check_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("check", "--spec", "tiny", "--backends", "numpy", "--json", blocker / "report.json")
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output
    assert "PASS" not in result.output  # refused before any work
    read_only = invoke("check", "--spec", "tiny", "--backends", "numpy", "--markdown", "/proc/report.md")
    assert read_only.exit_code == 2, read_only.output  # /proc takes no new files, not even root's
    assert "--markdown /proc/report.md: cannot write in /proc" in read_only.output


def test_a_write_that_fails_midway_leaves_nothing_behind(tmp_path, params_file, monkeypatch):
    """A full disk at the rename: exit 2 naming the path; no temporary file, the source intact."""
    import gan_backends._io as io_module

    def full_disk(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(io_module.os, "replace", full_disk)
    before = digest(params_file)
    out = tmp_path / "out.safetensors"
    result = invoke("port", params_file, "--spec", "tiny", "--to", "safetensors", "--out", out)
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output and str(out) in result.output.replace("\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == [params_file.name]
    assert digest(params_file) == before


# -- unreadable input -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "folder"])
def test_damaged_safetensors_are_bad_input_in_every_reader(tmp_path, params_file, damage):
    bad = tmp_path / "bad.safetensors"
    if damage == "truncated":
        bad.write_bytes(params_file.read_bytes()[:40])
    elif damage == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.mkdir()
    for args in (
        ("sample", bad, "--backend", "numpy", "--out", tmp_path / "s.npy"),
        ("port", bad, "--spec", "tiny", "--to", "safetensors", "--out", tmp_path / "p.safetensors"),
        (
            "train",
            "--backend",
            "numpy",
            "--spec",
            RUN_SPEC,
            "--data",
            "ring",
            "--steps",
            "1",
            "--resume",
            bad,
            "--out",
            tmp_path / "run",
        ),  # fmt: skip
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args[0], result.output)
        assert str(bad) in result.output.replace("\n", ""), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # refused before the run's folder was made


def test_spec_files_that_are_not_specs(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, message in ((deep, "nests deeper than"), (binary, "not UTF-8"), (tmp_path, "is a folder")):
        result = invoke("check", "--spec", path, "--backends", "numpy")
        assert result.exit_code == 2, result.output
        assert message in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("check", "--spec", "tiny", "--device", "tpu"), "unknown device 'tpu'"),
        (("check", "--spec", "tiny", "--mode", "numpy=warp"), "numpy has no mode 'warp'"),
        (("check", "--spec", "tiny", "--backends", "mxnet"), "unknown backend 'mxnet'"),
        (("train", "--data", "ring", "--backend", "numpy", "--device", "quantum:0"), "unknown device"),
    ],
)
def test_nonsense_options_are_named(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


# -- resume means the same run ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (("--seed", "7"), "its run has seed 0, this one 7; pass --seed 0"),
        (("--batch-size", "16"), "its run has batch_size 8, this one 16; pass --batch-size 8"),
        (("--data", "grid"), "its run trained on 'ring', this one on 'grid'"),
    ],
)
def test_resume_refuses_another_run(finished_run, change, message):
    settings = {"--seed": "0", "--batch-size": "8", "--data": "ring", **dict([change])}
    before = folder_state(finished_run)
    flat = [x for pair in settings.items() for x in pair]
    result = invoke("train", "--backend", "numpy", "--spec", RUN_SPEC, "--steps", "5", *flat,
                    "--out", finished_run, "--resume", finished_run / "last.safetensors")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert folder_state(finished_run) == before


def test_resume_refuses_fewer_steps_than_the_checkpoint_holds(finished_run):
    result = invoke("train", "--backend", "numpy", "--spec", RUN_SPEC, "--data", "ring", "--batch-size", "8",
                    "--steps", "2", "--out", finished_run, "--resume", finished_run / "last.safetensors")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "it holds step 3" in result.output


# -- internal errors ---------------------------------------------------------------------------------


def test_an_internal_error_exits_3_with_the_traceback_in_a_log(monkeypatch):
    import gan_backends.check as check_job

    def broken(*args, **kwargs):
        return 1 / 0

    require_backend("torch")
    monkeypatch.setattr(check_job, "run_check", broken)
    result = invoke("check", "--spec", "tiny", "--backends", "torch,numpy")
    assert result.exit_code == 3, result.output
    assert "internal error: ZeroDivisionError" in result.output and "Traceback" not in result.output
    log = Path(next(w for w in result.output.replace("\n", " ").split() if w.endswith(".log;")).rstrip(";"))
    assert "ZeroDivisionError" in log.read_text() and "Traceback" in log.read_text()
    log.unlink()


# -- non-finite values are findings -------------------------------------------------------------------


@pytest.fixture
def nan_params_file(tmp_path) -> Path:
    spec = get_preset("tiny")
    params = init_params(spec, 0)
    params["generator.0.kernel"][0, :3] = np.nan
    path = tmp_path / "nan.safetensors"
    save_params(path, params, spec)
    return path


def test_sample_and_port_report_nan_weights_and_write_nothing(tmp_path, nan_params_file):
    out = tmp_path / "samples.npy"
    drawn = invoke("sample", nan_params_file, "--backend", "numpy", "--out", out)
    assert drawn.exit_code == 1, drawn.output
    assert "non-finite:" in drawn.output and "generator.0.kernel (3 NaN, 0 Inf" in drawn.output
    ported = invoke(
        "port", nan_params_file, "--spec", "tiny", "--to", "safetensors", "--out", tmp_path / "p.safetensors"
    )
    assert ported.exit_code == 1, ported.output
    assert "generator.0.kernel (3 NaN" in ported.output and "not converted" in ported.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [nan_params_file.name]


def test_nan_noise_is_bad_input(tmp_path, params_file):
    noise = tmp_path / "z.npy"
    np.save(noise, np.full((4, get_preset("tiny").latent_dim), np.nan, np.float32))
    result = invoke("sample", params_file, "--backend", "numpy", "--noise", noise, "--out", tmp_path / "s.npy")
    assert result.exit_code == 2, result.output
    assert "noise" in result.output and "NaN" in result.output


def test_a_pickle_that_asks_for_code_is_refused_naming_the_global(tmp_path):
    """The classic torch.load exploit: os.system in __reduce__. Nothing runs; the global is named."""
    require_backend("torch")
    import torch

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "generator.pth"
    torch.save({"0.weight": Exploit()}, evil)
    result = invoke("port", evil, "--spec", "tiny", "--to", "safetensors", "--out", tmp_path / "g.safetensors")
    assert result.exit_code == 2, result.output
    assert "asks for the Python global posix.system" in result.output.replace("\n", " ")
    assert "weights_only` set to `False`" not in result.output  # torch's advice is not repeated
    assert not marker.exists()


# -- fail fast on size ----------------------------------------------------------------------------------


def test_a_spec_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    """A 10⁹-unit Dense is a valid spec that would fail allocating 60 GiB deep in NumPy; it is
    refused at once, naming the layer."""
    from gan_backends.sizing import layer_sizes

    data = get_preset("tiny").to_dict()
    data["generator"][0]["units"] = 10**9
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(data))
    monkeypatch.setenv("GAN_BACKENDS_MEMORY_LIMIT", "16G")  # whatever this machine has free
    started = time.monotonic()
    result = invoke("check", "--spec", huge, "--backends", "numpy,numpy")
    assert result.exit_code == 2, result.output
    assert "more than the 16 GiB of GAN_BACKENDS_MEMORY_LIMIT" in result.output.replace("\n", " ")
    assert "generator layer 0 Dense(units=1000000000" in result.output.replace("\n", " ")
    assert time.monotonic() - started < 10
    # the floor counts parameters from the shapes: tiny by hand, G 8·16+16 + 16·12+12, D 12·10+10 + 10+1
    assert sum(s.parameters for s in layer_sizes(get_preset("tiny"))) == 144 + 204 + 130 + 11


def test_a_memory_limit_is_honoured_and_checked(monkeypatch):
    monkeypatch.setenv("GAN_BACKENDS_MEMORY_LIMIT", "10M")
    result = invoke("train", "--backend", "numpy", "--spec", "dcgan", "--data", "ring", "--batch-size", "64")
    assert result.exit_code == 2 and "GAN_BACKENDS_MEMORY_LIMIT" in result.output
    monkeypatch.setenv("GAN_BACKENDS_MEMORY_LIMIT", "lots")
    result = invoke("check", "--spec", "tiny", "--backends", "numpy,numpy")
    assert result.exit_code == 2 and "GAN_BACKENDS_MEMORY_LIMIT='lots'" in result.output


@pytest.mark.parametrize("name, framework", [("g.pth", "torch"), ("g.msgpack", "jax"), ("g.weights.h5", "tensorflow")])
@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_damaged_native_checkpoints_are_bad_input(tmp_path, name, framework, damage):
    """Every native reader: random bytes or the first bytes of a real header, named, no traceback."""
    require_backend(framework)
    heads = {
        "g.pth": b"PK\x03\x04\x14\x00\x00\x00",
        "g.msgpack": b"\x82\xa6params",
        "g.weights.h5": b"\x89HDF\r\n\x1a\n",
    }
    bad = tmp_path / name
    bad.write_bytes(np.random.default_rng(1).bytes(2048) if damage == "random" else heads[name])
    result = invoke("port", bad, "--spec", "tiny", "--to", "safetensors", "--out", tmp_path / "out.safetensors")
    assert result.exit_code == 2, result.output
    assert str(bad) in result.output.replace("\n", "") and "Traceback" not in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_a_device_this_machine_lacks_is_bad_input(params_file, tmp_path):
    require_backend("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = invoke("sample", params_file, "--backend", "torch", "--device", "cuda", "--out", tmp_path / "s.npy")
    assert result.exit_code == 2, result.output
    assert "device 'cuda': torch sees 0 CUDA device(s)" in result.output
