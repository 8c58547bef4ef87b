"""The shape of the house: each framework in one package, read through its manifest.

These tests read the source and the manifests, not the numbers: a framework imported outside
its package, a table keyed by framework name in a job, a spec layer type some package cannot
build, or a manifest mode its backend refuses, each fails here with the place named.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_backend

from gan_backends.backends import FRAMEWORKS, REGISTRY, ModeUnavailable, get_backend, load_part
from gan_backends.bench.flops import FLOP_RULES
from gan_backends.params import init_params
from gan_backends.presets import get_preset
from gan_backends.spec import LAYER_TYPES

PACKAGE = Path(__file__).resolve().parents[1] / "gan_backends"
#: The top-level modules each framework package owns (Keras belongs to TensorFlow's).
OWNED = {
    "torch": {"torch", "torchvision"},
    "tensorflow": {"tensorflow", "keras", "tf_keras"},
    "jax": {"jax", "jaxlib", "flax", "optax", "orbax"},
}
FRAMEWORK_MODULES = set().union(*OWNED.values())


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in ``path`` (functions included), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _owner(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[1] if len(parts) > 2 and parts[0] == "backends" and parts[1] in OWNED else None


def test_each_framework_is_imported_only_in_its_own_package():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        owner = _owner(path)
        for line, module in _imports(path):
            if module in FRAMEWORK_MODULES and (owner is None or module not in OWNED[owner]):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not wrong, "framework imports outside their package:\n" + "\n".join(wrong)


def test_a_package_init_imports_no_framework():
    """Reading the manifests (and importing the whole framework-free core) starts no framework."""
    code = (
        "import sys, gan_backends, gan_backends.cli, gan_backends.port, gan_backends.check, gan_backends.bench, "
        "gan_backends.losscheck, gan_backends.parallel.launch\n"
        "from gan_backends.backends import REGISTRY\n"
        f"started = sorted(set({sorted(FRAMEWORK_MODULES)!r}) & set(sys.modules))\n"
        "assert not started, started\n"
        "print(sorted(REGISTRY))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(sorted(REGISTRY))


def _framework_keyed_dicts(path: Path) -> list[str]:
    """Dict literals with two or more framework names as keys: a table keyed by framework."""
    names = set(FRAMEWORKS)
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if len(keys & names) >= 2:
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return hits


@pytest.mark.parametrize("job", ["bench", "parallel", "losscheck", "port", "check", "backends/__init__.py"])
def test_the_jobs_and_the_registry_keep_no_table_keyed_by_framework(job):
    paths = [PACKAGE / job] if job.endswith(".py") else sorted((PACKAGE / job).rglob("*.py"))
    hits = [hit for path in paths for hit in _framework_keyed_dicts(path)]
    assert not hits, "tables keyed by framework name (read the manifests instead):\n" + "\n".join(hits)


def _layer_tables() -> list[tuple[str, str]]:
    return [(name, table) for name, entry in REGISTRY.items() for table in entry.layer_tables]


@pytest.mark.parametrize(("backend", "table"), _layer_tables())
def test_every_layer_type_of_the_spec_has_an_entry_in_every_layer_table(backend, table):
    """Adding a layer type to the spec means one entry in each of these tables; the missing one is named."""
    if backend in FRAMEWORKS:
        require_backend(backend)
    module, _, attr = table.partition(":")
    entries = getattr(load_part(backend, module), attr)
    missing = sorted(name for name, cls in LAYER_TYPES.items() if cls not in entries)
    assert not missing, f"{backend} {table} has no entry for layer type(s) {', '.join(missing)}"


def test_every_layer_type_of_the_spec_has_a_flop_rule():
    missing = sorted(name for name, cls in LAYER_TYPES.items() if cls not in FLOP_RULES)
    assert not missing, f"bench/flops.py FLOP_RULES has no rule for layer type(s) {', '.join(missing)}"


def test_every_package_declares_its_layer_tables():
    for name, entry in REGISTRY.items():
        assert any(t.startswith("layers:") for t in entry.layer_tables), f"{name} declares no layers table"
    for name in ("tensorflow", "jax"):  # the port's native models: Keras and Flax built from a spec
        assert any(t.startswith("checkpoint:") for t in REGISTRY[name].layer_tables), name


@pytest.mark.parametrize("name", list(REGISTRY))
def test_a_manifest_names_the_modes_its_backend_accepts(name):
    if name in FRAMEWORKS:
        require_backend(name)
    entry = REGISTRY[name]
    cls = get_backend(name)
    assert cls.name == name and cls.modes == entry.modes and cls.host_only == entry.host_only
    spec = get_preset("tiny")
    params = init_params(spec, seed=0)
    for mode in entry.modes:
        try:
            backend = cls(spec, params, mode=mode, device="cpu")
        except ModeUnavailable:  # e.g. CUDA graphs on a CPU: refused by name, not unknown
            assert mode in entry.cuda_only_modes  # and the manifest says so, for bench's parent
            continue
        assert mode not in entry.cuda_only_modes
        assert backend.mode == mode  # built, not run: a compiled mode's first call is a compile
    with pytest.raises(ValueError, match="has no mode"):
        cls(spec, params, mode="no-such-mode")
    assert set(entry.data_parallel_modes) <= set(entry.modes)
    assert set(entry.sweep_modes) == set(entry.modes)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_a_manifest_parts_exist_with_the_same_names(name):
    """Every framework package exports the same names, as the jobs call them."""
    require_backend(name)
    entry = REGISTRY[name]
    if entry.data_parallel_modes:
        assert callable(load_part(name, "parallel").launch)
    runner = load_part(name, "losscheck")
    assert runner.IMAGE_LAYOUT in ("nchw", "nhwc") and callable(runner.run_logits) and callable(runner.run_penalty)
    if entry.checkpoint_kinds:
        checkpoint = load_part(name, "checkpoint")
        for fn in ("read", "write", "run"):
            assert callable(getattr(checkpoint, fn)), f"{name}.checkpoint has no {fn}()"


def test_ci_runs_exactly_the_readme_test_command():
    """The README's second quick-start command is what ``.ci/run`` runs, word for word."""
    root = PACKAGE.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    ci = [line for line in (root / ".ci" / "run").read_text(encoding="utf-8").splitlines() if "pytest" in line]
    assert ci == [commands[1]]


@pytest.mark.xdist_group("house-xdist-group")
def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` (the README's test command) a grouped test's nodeid carries its
    group, which is what the scheduler groups by. pytest 9.2 with xdist 3.8 dropped it silently
    (pyproject's pin): both workers then built each module's engines and trained models."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@house-xdist-group"), request.node.nodeid
