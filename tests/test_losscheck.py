"""losscheck end to end: the project's own zoo passes in every framework, the API raises with the
report inside a test suite, and the command line's exit status, tables and JSON."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends.cli import app
from gan_backends.losscheck import LossCheckError, assert_loss_matches, check_loss, load_function
from gan_backends.losses import discriminator_loss, generator_loss, gradient_penalty
from gan_backends.spec import LOSS_NAMES, LossSpec, SpecError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "losses"
OPS_OF = {
    "torch": ("gan_backends.backends.torch.backend", "TORCH_OPS"),
    "tensorflow": ("gan_backends.backends.tensorflow.backend", "TF_OPS"),
    "jax": ("gan_backends.backends.jax.backend", "JAX_OPS"),
}


def _ops(framework: str):
    module, name = OPS_OF[framework]
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_zoo_loss_passes_in_its_backend(framework: str, name: str) -> None:
    """The zoo as each backend runs it (gan_backends.losses on the backend's ops), both roles,
    with the paper-8 least-squares targets and a halved D to exercise the parameters."""
    ops = _ops(framework)
    spec = LossSpec(name=name, d_scale=0.5 if name != "wasserstein" else 1.0, a=-1.0, b=1.0, c=0.0)
    d = check_loss(lambda r, f: discriminator_loss(ops, r, f, spec)["d_loss"], spec, role="d", framework=framework)
    g = check_loss(lambda f: generator_loss(ops, f, spec), spec, role="g", framework=framework)
    assert d.passed, d.text()
    assert g.passed, g.text()


def _penalty_fn(framework: str, spec: LossSpec):
    """The zoo's penalty as each backend computes it: its autodiff for ∇ₓD, then gradient_penalty."""
    ops = _ops(framework)
    if framework == "torch":
        import torch

        def input_grad(critic, x):
            out = critic(x)
            return torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)[0]

        def sq(g):
            return g.square().sum(dim=tuple(range(1, g.ndim)))
    elif framework == "tensorflow":
        import tensorflow as tf

        def input_grad(critic, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = critic(x)
            return tape.gradient(out, x)

        def sq(g):
            return tf.reduce_sum(tf.square(g), axis=list(range(1, g.shape.rank)))
    else:
        import jax

        def input_grad(critic, x):
            return jax.grad(lambda x: critic(x).sum())(x)

        def sq(g):
            return (g * g).reshape(g.shape[0], -1).sum(axis=1)

    def penalty(critic, real, fake, alpha):
        x = alpha * real + (1 - alpha) * fake if spec.penalty == "wgan_gp" else real
        return gradient_penalty(ops, sq(input_grad(critic, x)), spec)

    return penalty


@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_zoo_penalties_pass_in_every_framework(framework: str, penalty: str) -> None:
    spec = LossSpec(name="wasserstein", penalty=penalty, penalty_weight=10.0)
    report = check_loss(_penalty_fn(framework, spec), spec, role="penalty", framework=framework)
    assert report.passed, report.text()
    assert {c.name for c in report.cases} >= {"ordinary", "norm at 0", "batch of one", "bfloat16", "float16"}


def test_assert_loss_matches_raises_with_the_diagnosis_inside_a_test_suite() -> None:
    pytest.importorskip("torch")
    import torch

    def my_lsgan_d(real, fake):
        return ((real - 1) ** 2).mean() + (fake**2).mean()

    with pytest.raises(LossCheckError, match="without the ½ factor") as info:
        assert_loss_matches(my_lsgan_d, "least_squares", role="d", framework="torch")
    assert "--convention scale=2" in str(info.value)
    assert info.value.report.diagnosis.explained
    report = assert_loss_matches(my_lsgan_d, "least_squares", role="d", framework="torch", conventions={"scale": 2})
    assert report.passed and report.conventions == {"scale": "2"}
    assert torch.is_grad_enabled()


def test_non_scalar_loss_is_named() -> None:
    pytest.importorskip("torch")
    import torch.nn.functional as F

    report = check_loss(lambda f: F.softplus(-f), "non_saturating", role="g", framework="torch")
    assert not report.passed
    assert "not a scalar" in report.cases[0].error


def test_bad_input_is_named() -> None:
    with pytest.raises(SpecError, match="known"):
        check_loss(lambda f: f, "hingeloss", role="g", framework="torch")
    with pytest.raises(SpecError, match="role"):
        check_loss(lambda f: f, "hinge", role="critic", framework="torch")
    with pytest.raises(SpecError, match="penalty"):
        check_loss(lambda f: f, "hinge", role="penalty", framework="torch")
    with pytest.raises(SpecError, match="unknown loss parameter"):
        check_loss(lambda f: f, "hinge", role="g", framework="torch", loss_params={"margin": 2.0})
    # A relativistic G loss reads D(real) too, and R3GAN's penalty takes both batches.
    with pytest.raises(SpecError, match=r"role g makes: fn\(real_logits, fake_logits\)"):
        check_loss(lambda f: f, "r3gan", role="g", framework="torch")
    with pytest.raises(SpecError, match=r"or fn\(critic, real, fake\)"):
        check_loss(lambda f: f, "r3gan", role="penalty", framework="torch")
    with pytest.raises(SpecError, match="compares logits: run it with --inputs logits"):
        check_loss(lambda r, f: r, "rasgan", role="d", framework="torch", inputs="probabilities")
    with pytest.raises(SpecError, match="MODULE:FUNCTION"):
        load_function("no_colon_here")
    with pytest.raises(SpecError, match="no attribute"):
        load_function(f"{EXAMPLES / 'wgan_gp_torch.py'}:missing")


runner = CliRunner()


def test_cli_flags_the_per_pixel_norm_and_passes_the_correct_penalty(tmp_path: Path) -> None:
    """The README's example: the dim=1 norm over NCHW gradients is flagged and named; the
    flattened one passes. Exit status 1 and 0, and the JSON holds the same verdict."""
    pytest.importorskip("torch")
    bad = runner.invoke(
        app,
        ["losscheck", f"{EXAMPLES / 'wgan_gp_torch.py'}:gradient_penalty_per_pixel", "-f", "torch", "--loss", "wgan_gp",
         "--role", "penalty", "--json", str(tmp_path / "bad.json")],
    )  # fmt: skip
    assert bad.exit_code == 1, bad.output
    assert "per-pixel norm" in bad.output and "axis 1 of NCHW" in bad.output
    record = json.loads((tmp_path / "bad.json").read_text())
    assert record["passed"] is False and record["diagnosis"]["findings"][0]["kind"] == "norm_axes"
    good = runner.invoke(
        app,
        [
            "losscheck",
            f"{EXAMPLES / 'wgan_gp_torch.py'}:gradient_penalty",
            "-f",
            "torch",
            "--loss",
            "wgan_gp",
            "--role",
            "penalty",
        ],
    )
    assert good.exit_code == 0, good.output


def test_cli_names_the_saturating_range_of_the_dcgan_tutorial(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "tutorial.json"
    result = runner.invoke(
        app,
        ["losscheck", f"{EXAMPLES / 'dcgan_tutorial_torch.py'}:discriminator_loss", "-f", "torch", "--loss",
         "non_saturating", "--role", "d", "--inputs", "probabilities", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    ranges = json.loads(out.read_text())["diagnosis"]["ranges"]
    # float32: sigmoid(l) = 1/(1 + e^-l) is exactly 1 once e^-l < 2^-24 (half an ulp of 1), i.e.
    # l > 24·ln 2 = 16.64: the fake term's gradient survives up to there. The real term's dies
    # where p(1-p) < 1e-12 (BCELoss's backward floor): l < -ln(1e12) = -27.63.
    assert ranges["fake"]["grad"][1] == pytest.approx(16.64, abs=0.05)
    assert ranges["real"]["grad"][0] == pytest.approx(-27.63, abs=0.05)
    assert ranges["fake"]["plateau"]["high"] == pytest.approx(100.0, abs=1e-3)
    declared = runner.invoke(
        app,
        ["losscheck", f"{EXAMPLES / 'dcgan_tutorial_torch.py'}:discriminator_loss", "-f", "torch", "--loss",
         "non_saturating", "--role", "d", "--inputs", "probabilities", "--convention", "probabilities=true"],
    )  # fmt: skip
    assert declared.exit_code == 0, declared.output


def test_cli_bad_input_exits_2() -> None:
    result = runner.invoke(app, ["losscheck", "nowhere.py:f", "-f", "torch", "--loss", "hinge", "--role", "d"])
    assert result.exit_code == 2 and "no such file" in result.output
    result = runner.invoke(
        app, ["losscheck", f"{EXAMPLES / 'wgan_gp_torch.py'}:gradient_penalty", "-f", "torch", "--loss", "wgan_gp",
              "--role", "penalty", "--convention", "sacle=2"],
    )  # fmt: skip
    assert result.exit_code == 2 and "unknown convention" in result.output


def test_a_precision_the_framework_cannot_run_is_skipped_not_failed() -> None:
    pytest.importorskip("torch")
    import torch
    import torch.nn.functional as F

    def no_bfloat16_kernel(real, fake):  # as a framework without a bf16 kernel on this device raises
        if real.dtype == torch.bfloat16:
            raise RuntimeError("\"softplus_cpu\" not implemented for 'BFloat16'")
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    report = check_loss(no_bfloat16_kernel, "non_saturating", role="d", framework="torch")
    assert report.passed, report.text()
    bf16 = next(c for c in report.cases if c.dtype == "bfloat16")
    assert bf16.skipped and "not implemented for 'BFloat16'" in bf16.notes[-1]


def test_other_zoo_losses_and_signs_are_named() -> None:
    pytest.importorskip("torch")
    import torch

    def hinge_as_wasserstein(real, fake):
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()

    report = check_loss(hinge_as_wasserstein, "wasserstein", role="d", framework="torch")
    assert report.diagnosis.findings[0].kind == "loss" and "hinge" in report.diagnosis.summary

    def critic_maximised(real, fake):
        return real.mean() - fake.mean()

    report = check_loss(critic_maximised, "wasserstein", role="d", framework="torch")
    assert "sign is flipped" in report.diagnosis.summary
    assert report.diagnosis.conventions == ["scale=-1"]

    def hinge_margin_zero(real, fake):
        return torch.relu(-real).mean() + torch.relu(fake).mean()

    report = check_loss(hinge_margin_zero, "hinge", role="d", framework="torch")
    assert report.diagnosis.conventions == ["margin=0"]


def test_the_tensorflow_tutorial_losses_pass() -> None:
    """The TF DCGAN tutorial's Keras BinaryCrossentropy(from_logits=True) losses, verbatim."""
    pytest.importorskip("tensorflow")
    d = check_loss(
        load_function(f"{EXAMPLES / 'dcgan_tutorial_tf.py'}:discriminator_loss"),
        "non_saturating",
        role="d",
        framework="tensorflow",
    )
    g = check_loss(
        load_function(f"{EXAMPLES / 'dcgan_tutorial_tf.py'}:generator_loss"), "non_saturating", role="g", framework="tf"
    )
    assert d.passed, d.text()
    assert g.passed, g.text()


def test_a_declared_convention_is_not_diagnosed_again():
    """A per-pixel penalty returned without its weight, with penalty_weight=1 declared: the
    diagnosis names the norm and no longer says 'declare penalty_weight=1'. Without the
    declaration it names both."""
    require_backend("torch")
    import torch

    def per_pixel_unweighted(critic, real, fake, alpha):
        x = alpha * real + (1 - alpha) * fake
        scores = critic(x)
        (grad,) = torch.autograd.grad(scores, x, torch.ones_like(scores), create_graph=True)
        return ((grad.norm(2, dim=1) - 1) ** 2).mean()

    plain = check_loss(per_pixel_unweighted, "wgan_gp", role="penalty", framework="torch", dtypes=())
    assert {f.kind for f in plain.diagnosis.findings} >= {"norm_axes", "penalty_weight"}
    declared = check_loss(
        per_pixel_unweighted, "wgan_gp", role="penalty", framework="torch", dtypes=(), conventions={"penalty_weight": 1}
    )
    kinds = [f.kind for f in declared.diagnosis.findings]
    assert not declared.passed and "norm_axes" in kinds and "penalty_weight" not in kinds
    assert "penalty_weight=1" not in declared.diagnosis.conventions
