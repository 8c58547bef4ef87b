"""The command line end to end (in process, through typer's runner, and once as a subprocess)."""

import json
import os
import re
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


TF_START_UP_NOISE = ("oneDNN", "absl::InitializeLog", "port.cc", "cuda")


@pytest.mark.long
@pytest.mark.skipif(len(INSTALLED) < 3, reason="the default check runs all three frameworks")
def test_default_check_as_installed_command():
    """The README's main job: every installed framework and the reference, the default spec; and
    TensorFlow's start-up lines (its oneDNN notice goes through absl before
    absl::InitializeLog(), whatever TF_CPP_MIN_LOG_LEVEL says) stay off the terminal."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "gan_backends.cli", "check", "--quiet", "--steps", "3", "--batch-size", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pair in ("torch vs tensorflow", "torch vs jax", "tensorflow vs jax"):
        assert f"{pair}: PASS" in proc.stdout
    for noise in TF_START_UP_NOISE:
        assert noise not in proc.stderr, proc.stderr


def test_install_hint_survives_rich_markup(monkeypatch):
    """'[jax]' in the hint is text, not a rich markup tag."""
    import dataclasses

    from gan_backends.backends import REGISTRY

    entry = REGISTRY["jax"]
    monkeypatch.setitem(REGISTRY, "jax", dataclasses.replace(entry, requires=("jax_not_installed_here",)))
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


#: A row of the compact table: the pair (on its first row only), the group, worst, tol, verdict, where.
SUMMARY_ROW = re.compile(r"^(\S.*?)?\s+(values|losses|gradients|params|layers|lock-step)\s+(\S+)\s+(\S+)\s+(PASS|FAIL)")


def _summary(output: str) -> list[tuple[str, str, str, str]]:
    """(pair, group, worst rel, verdict) per row of the compact table, the pair filled in."""
    found, pair = [], ""
    for line in output.splitlines():
        match = SUMMARY_ROW.match(line)
        if match:
            pair = (match.group(1) or pair).strip()
            found.append((pair, match.group(2), match.group(3), match.group(5)))
    return found


@pytest.fixture
def one_framework() -> str:
    """The output's layout is the same for every framework: one installed one shows it."""
    if not INSTALLED:
        pytest.skip("no framework installed")
    return INSTALLED[0]


def test_check_prints_one_compact_row_per_pair_and_group(one_framework, tmp_path):
    """By default, one row per quantity group with its worst error (the per-tensor rows only in
    the JSON and with --verbose); --quiet leaves the passing groups out; the verdicts always print."""
    out = tmp_path / "r.json"
    args = ["check", "--spec", "tiny", "--backends", f"{one_framework},numpy", "--steps", "2", "--batch-size", "8"]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    pair = f"{one_framework} vs numpy"
    rows = _summary(result.output)
    groups = ["values", "losses", "gradients", "params", "layers"]
    assert [(p, g) for p, g, _, _ in rows] == [(pair, g) for g in groups] + [(pair, "lock-step")]
    assert all(verdict == "PASS" for *_, verdict in rows)
    (data,) = json.loads(out.read_text())["pairs"]
    by_group = {g: worst for p, g, worst, _ in rows}
    for kind, group in (("value", "values"), ("loss", "losses"), ("grad", "gradients"), ("param", "params")):
        worst = max((r for r in data["rows"] if r["kind"] == kind), key=lambda r: r["rel"] / r["tol"])
        assert by_group[group] == f"{worst['rel']:.2e}", group
    assert "grad generator.0.kernel" not in result.output and "loss d_real" not in result.output  # no per-tensor rows
    assert f"{pair}: PASS" in result.output and "lock-step vs numpy: PASS" in result.output
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and _summary(quiet.output) == []
    assert f"{pair}: PASS" in quiet.output and "PASSED" in quiet.output


@pytest.fixture
def wide_console(monkeypatch):
    """The command's console 200 columns wide, so that no cell wraps. The console reads its width
    when it is made (COLUMNS, e.g. 80 in pytest-xdist's workers), not at each print."""
    from gan_backends.commands.common import console

    monkeypatch.setattr(console, "width", 200)


def test_check_verbose_prints_every_tensor(one_framework, wide_console):
    args = ["check", "--spec", "tiny", "--backends", f"{one_framework},numpy", "--steps", "2", "--verbose"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for quantity in ("G(z)", "loss d_real", "grad generator.0.kernel", "grad discriminator.0.bias"):
        assert quantity in result.output
    assert "generator params after 2 steps" in result.output and "free-running" in result.output
    assert "update, worst step" in result.output  # the lock-step table's per-network rows
    assert len(_summary(result.output)) == 6  # and the compact table after them


def test_check_summary_names_the_first_divergent_layer(one_framework, monkeypatch, wide_console):
    """The reference with D's LeakyReLU at slope 0.21 where the spec says 0.2: the compact table's
    layers row fails and names that layer (every layer before it agrees)."""
    from gan_backends.check import agreement
    from gan_backends.spec import LeakyReLU

    real_get_backend = agreement.get_backend

    def get_backend(name):
        cls = real_get_backend(name)
        if cls.name != "numpy":
            return cls

        class Sloppy(cls):
            def __init__(self, spec, params, **kwargs):
                layers = tuple(LeakyReLU(slope=0.21) if isinstance(x, LeakyReLU) else x for x in spec.discriminator)
                super().__init__(spec.replace(discriminator=layers), params, **kwargs)

        return Sloppy

    monkeypatch.setattr(agreement, "get_backend", get_backend)
    args = ["check", "--spec", "tiny", "--backends", f"{one_framework},numpy", "--steps", "1", "--no-lockstep"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    (layers,) = [line for line in result.output.splitlines() if re.search(r"\slayers\s", line)]
    assert "FAIL" in layers and "first parting: discriminator layer 1: LeakyReLU(slope=0.2)" in layers
    assert "generator layer" not in layers  # G's layers all agree: D alone is named
    assert f"{one_framework} vs numpy: FAIL" in result.output


def test_framework_start_up_logs_are_filtered_by_level():
    from gan_backends.startup_logs import is_dropped

    one_dnn = "I0000 00:00:1796161036.770556    9000 port.cc:153] oneDNN custom operations are on."
    pre_init = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    cuda = "W0000 00:00:1796161036.770556    9000 cuda_executor.cc:1] Could not find cuda drivers on your machine"
    error = "E0131 12:00:00.123456    9000 cuda_dnn.cc:8579] Unable to register cuDNN factory"
    tf_own = "2024-01-31 12:00:00.123456: W tensorflow/core/grappler/x.cc:42] Not handling type DT_DOUBLE"
    assert all(is_dropped(line, 2) for line in (one_dnn, pre_init, cuda, tf_own))
    assert not is_dropped(error, 2) and is_dropped(error, 3)  # errors show unless the user asks for level 3
    assert not any(is_dropped(line, 0) for line in (one_dnn, pre_init, cuda, error, tf_own))  # level 0: everything
    assert not is_dropped("Traceback (most recent call last):", 2) and not is_dropped("torch vs numpy: PASS", 2)
    # grappler's remapper on a residual graph: an ERROR line about an optimisation it skipped
    remapper = (
        "E0000 00:00:1796234119.755529    2418 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
        "Mutation::Apply error: fanout 'Relu_7' exist for missing node 'add_3'."
    )
    assert is_dropped(remapper, 2) and not is_dropped(remapper, 1)
    assert not is_dropped(remapper.replace("remapper failed", "layout failed"), 2)  # only that pass's line


def test_tensorflow_start_up_logs_are_shown_when_asked():
    """At TF_CPP_MIN_LOG_LEVEL=0 the filter lets TensorFlow's start-up lines through: the lines
    the default check keeps off stderr are there to filter, and a user can still see them."""
    require_backend("tensorflow")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    asked = subprocess.run(
        [sys.executable, "-m", "gan_backends.cli", "info"], capture_output=True, text=True, timeout=600, env=env
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "tensorflow" in asked.stdout
    if not any(noise in asked.stderr for noise in TF_START_UP_NOISE[:2]):
        pytest.skip("this TensorFlow logs nothing at start-up: nothing to filter")
