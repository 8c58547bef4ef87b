"""``sample`` and ``discriminate`` on anything ``port`` reads or writes, as a new user runs them.

The user's models are written by hand the way the PyTorch DCGAN tutorial writes them
(``nn.Sequential``, BatchNorm in eval mode with non-trivial running statistics) and saved by
torch itself; each command's output is held against that model's own forward pass on the same
noise or images, never against this project's code. The flows are the README's: a native file
sampled with ``--spec``; ``port`` (generator only) then ``sample`` what it wrote, in another
stack; a training script's dict of state_dicts and optimiser states, each network chosen by key.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend
from test_port import dcgan_small_torch_generator, random_bn_state
from typer.testing import CliRunner

from gan_backends.cli import app

TOL = 1e-5
runner = CliRunner()
#: One xdist worker takes the module: its module-scoped files are made once.
pytestmark = pytest.mark.xdist_group("sample-any")


def dcgan_small_torch_discriminator(seed: int = 1):
    """dcgan-small's D as the tutorial writes it, eval mode, non-trivial BatchNorm state."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    D = nn.Sequential(
        nn.Conv2d(1, 8, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(8, 16, 4, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(16, 1, 4, 1, 0, bias=False),
        nn.Flatten(),
    )
    scale, bias, mean, var = random_bn_state(np.random.default_rng(seed), 16)
    with torch.no_grad():
        for tensor, value in zip(
            (D[3].weight, D[3].bias, D[3].running_mean, D[3].running_var), (scale, bias, mean, var)
        ):
            tensor.copy_(torch.from_numpy(value))
    return D.eval()


def _invoke(*args: str) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict:
    """A tutorial G and D saved with torch.save, the tutorial's (N, 100, 1, 1)-style noise, and
    what the user's own models give on it."""
    require_backend("torch")
    import torch

    folder = tmp_path_factory.mktemp("user")
    G, D = dcgan_small_torch_generator(), dcgan_small_torch_discriminator()
    torch.save(G.state_dict(), folder / "netG.pth")
    # a training script's checkpoint: several state_dicts and an optimiser state in one dict
    opt = torch.optim.Adam(G.parameters(), lr=2e-4)
    torch.save(
        {"epoch": 3, "net_G": G.state_dict(), "net_D": D.state_dict(), "optim_G": opt.state_dict()},
        folder / "checkpoint.pth",
    )
    z = np.random.default_rng(0).standard_normal((6, 16, 1, 1)).astype(np.float32)
    np.save(folder / "z.npy", z)
    with torch.no_grad():
        images = G(torch.from_numpy(z).flatten(1)).numpy()  # NCHW
        logits = D(torch.from_numpy(images)).numpy()
    np.save(folder / "images_nchw.npy", images)
    return {"folder": folder, "images": images, "logits": logits}


@pytest.mark.parametrize("backend", ["torch", "jax", "numpy"])  # TensorFlow: in the port flow below
def test_a_torch_state_dict_samples_in_any_stack_with_the_users_noise(user_files, backend):
    """NCHW as torch gives it, and NHWC (the default) the same images transposed."""
    if backend != "numpy":
        require_backend(backend)
    folder = user_files["folder"]
    args = ["sample", folder / "netG.pth", "--spec", "dcgan-small", "--backend", backend, "--noise", folder / "z.npy"]
    nchw, nhwc = folder / f"{backend}-nchw.npy", folder / f"{backend}-nhwc.npy"
    _invoke(*args, "--layout", "NCHW", "--out", nchw)
    _invoke(*args, "--out", nhwc)
    np.testing.assert_allclose(np.load(nchw), user_files["images"], rtol=0, atol=TOL)
    np.testing.assert_array_equal(np.load(nhwc).transpose(0, 3, 1, 2), np.load(nchw))


def test_port_a_generator_then_sample_what_it_wrote_in_each_stack(user_files, tmp_path):
    """``port`` G only to safetensors, Keras and Flax; ``sample`` each file in the other stacks:
    the user's images, BatchNorm statistics carried (safetensors needs no --spec: it carries it)."""
    folder = user_files["folder"]
    targets = {"safetensors": "g.safetensors", "tensorflow": "g.weights.h5", "jax": "g.msgpack"}
    for to, name in targets.items():
        if to != "safetensors":
            require_backend(to)
        _invoke("port", folder / "netG.pth", "--spec", "dcgan-small", "--to", to, "--out", tmp_path / name)
    runs = [("g.safetensors", "jax", []), ("g.weights.h5", "jax", ["--spec", "dcgan-small"])]
    runs += [("g.msgpack", "tensorflow", ["--spec", "dcgan-small"]), ("g.safetensors", "torch", [])]
    for name, backend, spec in runs:
        out = tmp_path / f"{name}-{backend}.npy"
        _invoke("sample", tmp_path / name, *spec, "--backend", backend, "--noise", folder / "z.npy", "--out", out)
        np.testing.assert_allclose(np.load(out).transpose(0, 3, 1, 2), user_files["images"], rtol=0, atol=TOL)


def test_networks_chosen_by_key_from_a_training_scripts_checkpoint(user_files, tmp_path):
    """``{"net_G": …, "net_D": …, "optim_G": …}``: G samples, D discriminates, each the user's."""
    folder = user_files["folder"]
    ckpt, spec = folder / "checkpoint.pth", ["--spec", "dcgan-small"]
    require_backend("jax")
    _invoke("sample", ckpt, *spec, "--backend", "jax", "--noise", folder / "z.npy", "--out", tmp_path / "g.npy")
    np.testing.assert_allclose(np.load(tmp_path / "g.npy").transpose(0, 3, 1, 2), user_files["images"], atol=TOL)
    images = folder / "images_nchw.npy"
    for backend in ("torch", "jax"):
        out = tmp_path / f"d-{backend}.npy"
        _invoke("discriminate", ckpt, *spec, "--backend", backend, "--images", images, "--layout", "NCHW", "--out", out)
        np.testing.assert_allclose(np.load(out), user_files["logits"], rtol=0, atol=TOL)


def test_a_ported_critic_gives_the_users_logits(user_files, tmp_path):
    """port D out of the training script's dict to Keras, then discriminate in TensorFlow; port
    both networks to safetensors, then discriminate in torch without --spec."""
    require_backend("tensorflow")
    folder = user_files["folder"]
    nhwc = tmp_path / "images.npy"
    np.save(nhwc, user_files["images"].transpose(0, 2, 3, 1))
    src, dst = folder / "checkpoint.pth", tmp_path / "d.weights.h5"
    _invoke("port", src, "--spec", "dcgan-small", "--networks", "discriminator", "--to", "tensorflow", "--out", dst)
    out = tmp_path / "logits.npy"
    _invoke("discriminate", dst, "--spec", "dcgan-small", "--backend", "tensorflow", "--images", nhwc, "--out", out)
    np.testing.assert_allclose(np.load(out), user_files["logits"], rtol=0, atol=TOL)
    # the README's flow: both networks to safetensors, which then needs no --spec
    both, out = tmp_path / "gan.safetensors", tmp_path / "logits-torch.npy"
    _invoke("port", src, "--spec", "dcgan-small", "--to", "safetensors", "--out", both)
    _invoke("discriminate", both, "--backend", "torch", "--images", nhwc, "--out", out)
    np.testing.assert_allclose(np.load(out), user_files["logits"], rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{folder}/netG.pth", "--backend", "numpy"], "holds weights, not the architecture; give --spec"),
        (
            [
                "discriminate",
                "{folder}/netG.pth",
                "--spec",
                "dcgan-small",
                "--backend",
                "numpy",
                "--images",
                "{folder}/images_nchw.npy",
            ],
            "holds the generator, not the discriminator",
        ),  # fmt: skip
        (
            [
                "discriminate",
                "{folder}/checkpoint.pth",
                "--spec",
                "dcgan-small",
                "--backend",
                "numpy",
                "--images",
                "{folder}/images_nchw.npy",
            ],
            "expected floats (N, 16, 16, 1) (NHWC), got float32 (6, 1, 16, 16)",
        ),  # fmt: skip
        (
            [
                "sample",
                "{folder}/netG.pth",
                "--spec",
                "dcgan-small",
                "--backend",
                "numpy",
                "--noise",
                "{folder}/images_nchw.npy",
            ],
            "noise: expected floats shaped (count, 16) or (count, 16, 1, 1)",
        ),  # fmt: skip
        (["sample", "{folder}/netG.pth", "--spec", "dcgan-small", "--layout", "HWC"], "--layout: expected one of NHWC"),
    ],
)
def test_bad_input_is_named_with_exit_two(user_files, tmp_path, args, message):
    folder = user_files["folder"]
    out = ["--out", str(tmp_path / "out.npy")]
    result = runner.invoke(app, [a.format(folder=folder) for a in args] + out)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out.npy").exists()


def test_a_file_without_batchnorm_statistics_is_refused_not_run_on_fresh_ones(tmp_path):
    """A Flax user who serialised only ``params`` (no ``batch_stats``), and a parameter file of
    G's weights alone: G in inference mode would run on mean 0 and variance 1, another network
    than the trained one. Both are exit 2, naming the missing statistics (the matcher needs
    every slot of a layer, so fresh statistics are never filled in)."""
    require_backend("jax")
    from flax import serialization

    from gan_backends.params import init_params, save_params
    from gan_backends.port import write_native
    from gan_backends.presets import get_preset

    spec = get_preset("dcgan-small")
    params = {k: v for k, v in init_params(spec).items() if k.startswith("generator.")}
    full = tmp_path / "full.msgpack"
    write_native(params, None, spec, "jax", full)
    only_params = tmp_path / "params_only.msgpack"
    only_params.write_bytes(
        serialization.msgpack_serialize({"params": serialization.msgpack_restore(full.read_bytes())["params"]})
    )
    weights_only = tmp_path / "g_weights.safetensors"
    save_params(weights_only, params, spec)
    for path, message in (
        (only_params, "generator.2.running_mean (16,)"),
        (weights_only, "nothing in the file for generator layer 2 BatchNorm"),
    ):
        result = runner.invoke(app, ["sample", str(path), "--spec", "dcgan-small", "--out", str(tmp_path / "x.npy")])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
        assert not (tmp_path / "x.npy").exists()
