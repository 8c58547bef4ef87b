"""The command line end to end (in process, through typer's runner, and once as a subprocess)."""

import json
import subprocess
import sys

import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends import get_preset
from gan_backends.backends import FRAMEWORKS, is_available
from gan_backends.check import tolerances
from gan_backends.cli import app

runner = CliRunner()
INSTALLED = [f for f in FRAMEWORKS if is_available(f)]


def test_info_lists_every_backend():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for name in ("numpy", "torch", "tensorflow", "jax"):
        assert name in result.output


def test_specs_prints_loadable_json(tmp_path):
    result = runner.invoke(app, ["specs", "mlp"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == get_preset("mlp").to_dict()
    assert "mlp" in runner.invoke(app, ["specs"]).output


def test_check_end_to_end_with_every_output(framework, tmp_path):
    out, md, png = tmp_path / "report.json", tmp_path / "report.md", tmp_path / "out" / "divergence.png"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(get_preset("tiny").to_json())
    result = runner.invoke(
        app,
        [
            "check",
            "--spec",
            str(spec_file),
            "--backends",
            f"{framework},numpy",
            "--steps",
            "3",
            "--json",
            str(out),
            "--markdown",
            str(md),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    report = json.loads(out.read_text())
    assert report["passed"] is True
    assert report["schema"] == "gan-backends/check-v2"
    (pair,) = report["pairs"]
    quantities = {row["quantity"] for row in pair["rows"]}
    assert {"G(z)", "D(x)", "loss d_loss", "loss g_loss", "grad generator.0.kernel"} <= quantities
    assert "generator params after 3 steps" in quantities
    assert {b["name"] for b in report["environment"]["backends"]} == {framework, "numpy"}
    text = md.read_text()
    assert text.startswith("# gan-backends check") and "**PASSED**" in text
    assert f"| {framework} vs numpy | generator |" in text and "## lock-step" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_fails_with_exit_one_when_a_pair_disagrees(framework, monkeypatch):
    strict = tolerances.Tolerance(value=1e-30, loss=1e-30, grad=1e-30, param=1e-30, update=1e-30)
    monkeypatch.setitem(tolerances.TOLERANCES, ("float32", "highest"), strict)
    result = runner.invoke(app, ["check", "--spec", "tiny", "--backends", f"{framework},numpy", "--steps", "1"])
    assert result.exit_code == 1
    assert "FAIL" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spec", "nope"], "unknown preset 'nope'"),
        (["--spec", "missing.json"], "does not exist"),
        (["--backends", "torch,mxnet"], "unknown backend 'mxnet'"),
        (["--backends", "numpy"], "at least two backends"),
        (["--dtype", "float16"], "numerics.dtype"),
        (["--loss", "wgan-lp"], "unknown loss 'wgan-lp'"),
        (["--precision", "bf16", "--dtype", "float64"], "mixed precision over float32"),
    ],
)
def test_check_bad_input_exit_two(args, message):
    result = runner.invoke(app, ["check", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_spec_file_names_the_layer(tmp_path):
    data = get_preset("tiny").to_dict()
    data["generator"][2]["units"] = 13
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["check", "--spec", str(path)])
    assert result.exit_code == 2
    assert "generator output shape (13,)" in result.output


@pytest.mark.skipif(len(INSTALLED) < 3, reason="the default check runs all three frameworks")
def test_default_check_as_installed_command():
    """The README's main job: every installed framework and the reference, the default spec."""
    proc = subprocess.run(
        [sys.executable, "-m", "gan_backends.cli", "check", "--quiet", "--steps", "3", "--batch-size", "16"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pair in ("torch vs tensorflow", "torch vs jax", "tensorflow vs jax"):
        assert f"{pair}: PASS" in proc.stdout


def test_install_hint_survives_rich_markup(monkeypatch):
    """'[jax]' in the hint is text, not a rich markup tag."""
    from gan_backends.backends import REGISTRY, BackendEntry

    entry = REGISTRY["jax"]
    monkeypatch.setitem(REGISTRY, "jax", BackendEntry("jax", entry.target, ("jax_not_installed_here",), "jax"))
    result = runner.invoke(app, ["info"])
    assert "pip install 'gan-backends[jax]'" in result.output
    result = runner.invoke(app, ["check", "--backends", "jax,numpy"])
    assert result.exit_code == 2
    assert "pip install 'gan-backends[jax]'" in result.output


def test_bad_mode_argument_exit_two():
    result = runner.invoke(app, ["check", "--spec", "tiny", "--mode", "torch:compile"])
    assert result.exit_code == 2
    assert "--mode takes BACKEND=MODE" in result.output


def test_check_loss_override(framework, tmp_path):
    out = tmp_path / "r.json"
    args = ["check", "--spec", "tiny", "--loss", "least_squares", "--backends", f"{framework},numpy", "--steps", "2"]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    loss = json.loads(out.read_text())["spec"]["loss"]
    assert loss["name"] == "least_squares" and (loss["a"], loss["b"], loss["c"]) == (0.0, 1.0, 1.0)


def test_check_dcgan_with_wgan_gp(tmp_path):
    """The issue's command at CPU size: the dcgan preset rebuilt for the loss (critic without
    BatchNorm, Adam(1e-4, 0, 0.9), n_critic 5), second-order gradients, against the reference.
    The command's plumbing is the same for every framework: torch runs it here; TF and JAX run
    the same preset and loss in tests/test_check.py."""
    require_backend("torch")
    framework = "torch"
    out = tmp_path / "r.json"
    args = ["check", "--spec", "dcgan-small", "--loss", "wgan-gp", "--backends", f"{framework},numpy"]
    result = runner.invoke(app, [*args, "--steps", "2", "--batch-size", "8", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["spec"]["loss"]["penalty"] == "wgan_gp" and report["spec"]["n_critic"] == 5
    assert "BatchNorm" not in json.dumps(report["spec"]["discriminator"])


def test_penalty_on_a_batchnorm_critic_spec_file_is_refused(tmp_path):
    path = tmp_path / "dcgan.json"
    path.write_text(get_preset("dcgan-small").to_json())
    result = runner.invoke(app, ["check", "--spec", str(path), "--loss", "r1"])
    assert result.exit_code == 2
    assert "discriminator layer 3 BatchNorm" in result.output and "per sample" in result.output
