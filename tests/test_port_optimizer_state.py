"""A torch training script's checkpoint, optimiser states included, moved to another stack and
trained on there (issue 18, point 4): ``port RUN.pth --to checkpoint`` then ``train --resume``.

Two independent yardsticks: a hand-written torch loop (the user's own models, ``torch.optim.Adam``
and ``BCEWithLogitsLoss``) taking its next step, against the ported state's next step in each
stack; and six torch steps of ``train`` against three, moved through torch's own
``optimizer.state_dict()``, then three more in JAX and TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends import get_preset
from gan_backends.backends import get_backend
from gan_backends.backends.base import TrainBatch
from gan_backends.cli import app
from gan_backends.port import PortError, port, read_native, to_canonical
from gan_backends.port.spec_from import spec_from_models
from gan_backends.train import TrainConfig, load_checkpoint, train

runner = CliRunner()
pytestmark = pytest.mark.xdist_group("port-optimizer-state")

LATENT, BATCH = 4, 8


def _user_gan(seed: int = 0):
    """A user's MLP GAN written in torch, with its Adam optimisers (the DCGAN tutorial's settings)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(LATENT, 16), nn.ReLU(), nn.Linear(16, 2))  # noqa: N806
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))  # noqa: N806
    adam = {"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8}
    return G, D, torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)


def _batches(steps: int, seed: int = 1) -> list[TrainBatch]:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return [
        TrainBatch(
            real=rng.normal(0, 1, (1, BATCH, 2)).astype(f32),
            z_d=rng.normal(0, 1, (1, BATCH, LATENT)).astype(f32),
            z_g=rng.normal(0, 1, (BATCH, LATENT)).astype(f32),
        )
        for _ in range(steps)
    ]


def _user_step(G, D, opt_g, opt_d, batch: TrainBatch) -> None:  # noqa: N803
    """The user's loop: one D update on real and detached fakes, then one G update on fresh noise."""
    import torch
    import torch.nn.functional as F

    real, z_d, z_g = (torch.from_numpy(a) for a in (batch.real[0], batch.z_d[0], batch.z_g))
    opt_d.zero_grad()
    real_logits, fake_logits = D(real), D(G(z_d).detach())
    d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    d_loss = d_loss + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    logits = D(G(z_g))
    F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    opt_g.step()


def _save_run(path, G, D, opt_g, opt_d) -> None:  # noqa: N803
    import torch

    torch.save({"netG": G.state_dict(), "netD": D.state_dict(), "optimizerG": opt_g.state_dict(),
                "optimizerD": opt_d.state_dict(), "epoch": 0}, path)  # fmt: skip


def _canonical(path, spec) -> dict:
    return to_canonical(read_native(path), spec)[0]


def _worst(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[n] - b[n])) / max(np.max(np.abs(b[n])), 1e-12)) for n in b)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> dict:
    """Three steps of the user's loop, saved; then the user's fourth step, saved apart."""
    require_backend("torch")
    folder = tmp_path_factory.mktemp("user-run")
    G, D, opt_g, opt_d = _user_gan()  # noqa: N806
    spec = spec_from_models(G, D, latent_dim=LATENT).spec
    batches = _batches(4)
    for batch in batches[:3]:
        _user_step(G, D, opt_g, opt_d, batch)
    _save_run(folder / "run.pth", G, D, opt_g, opt_d)
    _user_step(G, D, opt_g, opt_d, batches[3])
    _save_run(folder / "step4.pth", G, D, opt_g, opt_d)
    before, after = _canonical(folder / "run.pth", spec), _canonical(folder / "step4.pth", spec)
    return {"folder": folder, "spec": spec, "next": batches[3], "before": before, "after": after}


def _step_error(got: dict, user_run: dict) -> float:
    """How far the fourth update (after - before) is from the user's, relative to the update."""
    before = user_run["before"]
    return _worst({n: got[n] - before[n] for n in before}, {n: user_run["after"][n] - before[n] for n in before})


@pytest.mark.parametrize("target", ["torch", "jax", "tensorflow"])
def test_the_ported_state_takes_the_users_next_step(user_run, target, tmp_path):
    require_backend(target)
    spec = user_run["spec"]
    result = port(user_run["folder"] / "run.pth", spec, "checkpoint", tmp_path / "moved.safetensors")
    assert result.passed, result.summary()
    moved = load_checkpoint(tmp_path / "moved.safetensors")
    assert moved.optimizer.steps == {"generator": 3, "discriminator": 3} and moved.meta["step"] == 3
    backend = get_backend(target)(spec, moved.params, device="cpu")
    backend.set_optimizer_state(moved.optimizer)
    backend.train_step(user_run["next"])
    # float32 rounding of one Adam step (~2e-4) on weights of ~0.3 (ulp 3e-8); a fresh Adam misses by ~1 (below)
    assert _step_error(backend.get_params(), user_run) < 2e-3


def test_without_the_optimiser_state_the_next_step_is_another(user_run):
    """The yardstick can fail: the same weights with a fresh Adam take a visibly different step."""
    require_backend("torch")
    spec = user_run["spec"]
    backend = get_backend("torch")(spec, _canonical(user_run["folder"] / "run.pth", spec), device="cpu")
    backend.train_step(user_run["next"])
    assert _step_error(backend.get_params(), user_run) > 0.3


def _invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


@pytest.mark.long
def test_three_torch_steps_moved_then_three_more_end_where_six_torch_steps_end(tmp_path):
    """The README flow: ``train`` in torch, the run saved by a torch script as it keeps its
    state (``optimizer.state_dict()``), ``port --to checkpoint``, ``train --resume`` in JAX and
    TensorFlow; against six steps in torch (BatchNorm, conv and transposed-conv moments)."""
    require_backend("torch")

    spec = get_preset("dcgan-small")
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8))
    six = train(spec, TrainConfig("torch", str(images), steps=6, batch_size=8, samples=4), tmp_path / "six")
    three = train(spec, TrainConfig("torch", str(images), steps=3, batch_size=8, samples=4), tmp_path / "three")
    ckpt = load_checkpoint(three.checkpoint)
    held = get_backend("torch")(spec, ckpt.params, device="cpu")
    held.set_buffers(ckpt.buffers)
    held.set_optimizer_state(ckpt.optimizer)
    _save_run(tmp_path / "run.pth", held.G, held.D, held.g_opt, held.d_opt)
    text = _invoke("port", tmp_path / "run.pth", "--spec", "dcgan-small", "--to", "checkpoint",
                   "--out", tmp_path / "moved.safetensors")  # fmt: skip
    assert "training checkpoint at step 3" in text and "optimiser state read from key 'optimizerG' (adam)" in text
    want = load_checkpoint(six.checkpoint)
    for target in ("jax", "tensorflow"):
        require_backend(target)
        _invoke("train", "--spec", "dcgan-small", "--backend", target, "--data", images, "--steps", 6,
                "--batch-size", 8, "--samples", 4, "--out", tmp_path / target,
                "--resume", tmp_path / "moved.safetensors")  # fmt: skip
        got = load_checkpoint(tmp_path / target / "last.safetensors")
        assert got.meta["step"] == 6 and got.optimizer.steps == {"generator": 6, "discriminator": 6}
        assert _worst(got.params, want.params) < 1e-4, target  # measured 4.3e-6 (JAX), 2.2e-7 (TF)


def test_an_optimiser_the_spec_does_not_run_is_refused_naming_each_difference(user_run, tmp_path):
    import torch

    G, D, opt_g, _ = _user_gan()  # noqa: N806
    odd = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.9, 0.99), amsgrad=True)
    _save_run(tmp_path / "odd.pth", G, D, opt_g, odd)
    with pytest.raises(PortError) as info:
        port(tmp_path / "odd.pth", user_run["spec"], "checkpoint", tmp_path / "x.safetensors")
    text = str(info.value)
    for words in ("sets amsgrad", "has lr 0.001, the spec's adam.lr 0.0002", "beta1 0.9", "beta2 0.99"):
        assert words in text, text
    sgd = torch.optim.SGD(D.parameters(), lr=2e-4)
    _save_run(tmp_path / "sgd.pth", G, D, opt_g, sgd)
    with pytest.raises(PortError, match="discriminator optimiser \\('optimizerD'\\) is sgd, the spec's adam"):
        port(tmp_path / "sgd.pth", user_run["spec"], "checkpoint", tmp_path / "x.safetensors")
    torch.save({"netG": G.state_dict(), "netD": D.state_dict()}, tmp_path / "weights.pth")
    (tmp_path / "spec.json").write_text(user_run["spec"].to_json())
    out = _invoke("port", tmp_path / "weights.pth", "--spec", tmp_path / "spec.json", "--to", "checkpoint",
                  "--out", tmp_path / "y.safetensors", code=2)  # fmt: skip
    assert "holds no generator optimiser state" in out
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_updates_that_are_not_the_specs_loop_are_refused(user_run, tmp_path):
    """Two D updates per G update, where the spec's n_critic is 1."""
    G, D, opt_g, opt_d = _user_gan()  # noqa: N806
    batch = _batches(1)[0]
    _user_step(G, D, opt_g, opt_d, batch)
    opt_d.step()  # a second D update (the gradients are still there)
    _save_run(tmp_path / "run.pth", G, D, opt_g, opt_d)
    with pytest.raises(PortError, match="D took 2 updates and G 1; spec .* takes n_critic = 1"):
        port(tmp_path / "run.pth", user_run["spec"], "checkpoint", tmp_path / "x.safetensors")
