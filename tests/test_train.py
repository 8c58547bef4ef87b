"""`gan-backends train`: learning on the ring in every backend, exact resume, a clear stop on a
non-finite loss with the last good checkpoint kept, checkpoints with BatchNorm statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends import get_preset, init_params
from gan_backends.cli import app
from gan_backends.presets import mlp
from gan_backends.spec import AdamSpec
from gan_backends.train import TrainConfig, TrainingDiverged, load_checkpoint, train

runner = CliRunner()


def test_training_on_the_ring_covers_more_modes(framework, tmp_path):
    """A few hundred steps of the 2-D MLP GAN: the untrained G (outputs near the origin, far
    from every mode) covers none of the 8 modes; trained, it reaches several."""
    config = TrainConfig(framework, "ring", steps=400, batch_size=256, samples=1000)
    result = train(get_preset("mlp-2d"), config, tmp_path)
    first, last = result.metrics[0], result.metrics[-1]
    assert (first["step"], last["step"]) == (0, 400)
    assert first["modes_covered"] == 0
    assert last["modes_covered"] >= 3, result.metrics
    assert len(result.history) == 400 and all(np.isfinite(h["d_loss"]) for h in result.history)
    assert (tmp_path / "losses.csv").read_text().count("\n") == 401
    for name in ("samples-000000.png", "samples-000400.png", "losses.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "metrics.json").read_text())[-1] == last


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resume_continues_exactly(backend, tmp_path):
    require_backend(backend)
    spec = get_preset("mlp-2d", g_hidden=(16,), d_hidden=(16,))
    straight = train(spec, TrainConfig(backend, "grid", steps=6, batch_size=32), tmp_path / "a")
    train(spec, TrainConfig(backend, "grid", steps=3, batch_size=32), tmp_path / "b")
    resumed = train(
        spec,
        TrainConfig(backend, "grid", steps=6, batch_size=32),
        tmp_path / "b",
        resume=tmp_path / "b" / "last.safetensors",
    )
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.meta["step"] == b.meta["step"] == 6
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    for slot in a.optimizer.slots:
        for name in a.optimizer.slots[slot]:
            np.testing.assert_array_equal(a.optimizer.slots[slot][name], b.optimizer.slots[slot][name])
    assert a.optimizer.steps == b.optimizer.steps == {"generator": 6, "discriminator": 6}
    assert [h["d_loss"] for h in straight.history] == [h["d_loss"] for h in resumed.history]


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    require_backend("torch")
    wild = AdamSpec(lr=1e30, beta1=0.5, beta2=0.999, eps=1e-8)
    spec = get_preset("mlp-2d").replace(g_optimizer=wild, d_optimizer=wild)
    with pytest.raises(TrainingDiverged, match=r"step \d+: non-finite loss .*last good checkpoint") as info:
        train(spec, TrainConfig("torch", "ring", steps=20, batch_size=16, checkpoint_every=1), tmp_path)
    diverged_at = int(str(info.value).split()[1].rstrip(":"))
    kept = load_checkpoint(tmp_path / "last.safetensors")
    assert kept.meta["step"] == diverged_at - 1
    assert all(np.isfinite(v).all() for v in kept.params.values())
    if diverged_at == 1:  # the kept state is the initial one, drawn from the seed
        for name, value in init_params(spec, 0).items():
            np.testing.assert_array_equal(kept.params[name], value)


def test_checkpoints_hold_batchnorm_statistics_and_optimizer_state(framework, tmp_path):
    spec = get_preset("dcgan-small")  # 16x16x1, BatchNorm in G and D
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8))
    result = train(spec, TrainConfig(framework, str(images), steps=2, batch_size=8, samples=4), tmp_path / "run")
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.buffers and all(k.endswith(("running_mean", "running_var")) for k in ckpt.buffers)
    # Two training steps moved the running means away from their initial zeros.
    means = [v for k, v in ckpt.buffers.items() if k.endswith("running_mean")]
    assert all(np.abs(m).max() > 0 for m in means)
    assert ckpt.optimizer.steps == {"generator": 2, "discriminator": 2}
    assert set(ckpt.optimizer.slots) == {"m", "v"}


def test_cli_trains_on_digits_and_refuses_bad_input(tmp_path):
    require_backend("torch")
    spec_file = tmp_path / "digits-mlp.json"
    spec_file.write_text(mlp(data_shape=(8, 8, 1), latent_dim=16, g_hidden=(32,), d_hidden=(32,)).to_json())
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        "digits",
        "--spec",
        str(spec_file),
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "samples-000003.png").exists() and (out / "last.safetensors").exists()
    bad = runner.invoke(app, ["train", "--data", "no-such-data", "--steps", "1", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no-such-data" in bad.output
    wrong = ["train", "--data", "digits", "--spec", "mlp", "--steps", "1", "--out", str(tmp_path / "wrong")]
    wrong_shape = runner.invoke(app, wrong)
    assert wrong_shape.exit_code == 2 and "(784,)" in wrong_shape.output
    assert not (tmp_path / "bad").exists() and not (tmp_path / "wrong").exists()  # refused before the folder


def test_two_backends_draw_the_same_images_from_one_noise_file(tmp_path):
    """A checkpoint trained with torch (BatchNorm statistics included), sampled by every
    installed backend from the same noise file: the same images within float32 rounding."""
    require_backend("torch")
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8))
    run = train(get_preset("dcgan-small"), TrainConfig("torch", str(images), steps=2, batch_size=8), tmp_path / "run")
    noise = tmp_path / "z.npy"
    np.save(noise, np.random.default_rng(5).standard_normal((6, 16)).astype(np.float32))
    drawn = {}
    for backend in ("numpy", "torch", "tensorflow", "jax"):
        require_backend(backend)
        out = tmp_path / f"{backend}.npy"
        args = ["sample", str(run.checkpoint), "--backend", backend, "--noise", str(noise), "--out", str(out)]
        result = runner.invoke(app, [*args, "--png", str(tmp_path / f"{backend}.png")])
        assert result.exit_code == 0, result.output
        drawn[backend] = np.load(out)
    reference = drawn.pop("numpy")  # float64 reference of the same checkpoint and noise
    assert reference.shape == (6, 16, 16, 1)
    for backend, drawn_images in drawn.items():
        rel = np.linalg.norm(drawn_images - reference) / np.linalg.norm(reference)
        assert rel < 1e-5, (backend, rel)
    bad = runner.invoke(app, ["sample", str(run.checkpoint), "--noise", str(images)])  # images, not noise
    assert bad.exit_code == 2 and "noise: expected floats shaped (count, 16) or (count, 16, 1, 1)" in bad.output
