"""torch's launch-overhead modes on a machine without a GPU: listed, refused on a CPU with the
reason (never run as something else), and the ``cuda-graph`` capture's bookkeeping checked with
CUDA's stream and graph calls stood in for: the warm-up steps it takes before capturing must leave
no trace, so that the captured step is exactly the step an eager backend takes next."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("torch")

import torch  # noqa: E402

from gan_backends import get_preset  # noqa: E402
from gan_backends.backends import ModeUnavailable  # noqa: E402
from gan_backends.backends.torch.backend import TorchBackend  # noqa: E402
from gan_backends.backends.torch.cuda_graph import CUDA_GRAPH_WARMUP_STEPS  # noqa: E402
from gan_backends.bench.config import ALL_MODES  # noqa: E402
from gan_backends.check.agreement import draw_inputs  # noqa: E402
from gan_backends.spec import SGDSpec  # noqa: E402


def test_the_modes_are_listed_for_the_bench():
    assert TorchBackend.modes == ALL_MODES["torch"]
    assert {"compile-cudagraphs", "cuda-graph"} <= set(TorchBackend.modes)


@pytest.mark.parametrize("mode", ["compile-cudagraphs", "cuda-graph"])
def test_a_graph_mode_is_refused_on_a_cpu(mode):
    spec = get_preset("tiny")
    inputs = draw_inputs(spec, batch_size=4, steps=1, seed=0)
    with pytest.raises(ModeUnavailable, match=f"torch mode '{mode}': CUDA graphs need a CUDA device.*cpu"):
        TorchBackend(spec, inputs.params, mode=mode, device="cpu")


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA's streams and graphs stood in for on a CPU. A real capture records kernels without
    running them; here the captured body runs once, for real: the state after ``_capture`` is
    then what the first replay would leave."""

    class Stream:
        def __init__(self, device=None) -> None:
            pass

        def wait_stream(self, other) -> None:
            pass

    @contextmanager
    def run_body(*args, **kwargs):
        yield

    captured = []
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", run_body)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: captured.append("graph") or "graph")
    monkeypatch.setattr(torch.cuda, "graph", run_body)
    return captured


def _state(backend: TorchBackend) -> dict[str, np.ndarray]:
    opt = backend.get_optimizer_state()
    flat = {f"param/{k}": v for k, v in backend.get_params().items()}
    flat.update({f"buffer/{k}": v for k, v in backend.get_buffers().items()})
    flat.update({f"{slot}/{k}": v for slot, tree in opt.slots.items() for k, v in tree.items()})
    return flat


@pytest.mark.parametrize(
    "spec, eager_steps_before",
    [
        (get_preset("dcgan-small"), 0),  # Adam, BatchNorm buffers; optimiser state created by the warm-up
        (get_preset("tiny"), 1),  # Adam state existing before the warm-up: restored by value
        (
            get_preset("tiny").replace(
                g_optimizer=SGDSpec(lr=0.01, momentum=0.9), d_optimizer=SGDSpec(lr=0.02, momentum=0.5)
            ),
            0,
        ),
    ],
    ids=["dcgan-small-adam", "tiny-adam-after-a-step", "tiny-sgd-momentum"],
)
def test_the_capture_warm_up_leaves_no_trace(fake_cuda, spec, eager_steps_before):
    inputs = draw_inputs(spec, batch_size=4, steps=2, seed=1)
    first, second = inputs.batches
    eager, graphed = TorchBackend(spec, inputs.params), TorchBackend(spec, inputs.params)
    if eager_steps_before:
        eager.train_step(first)
        graphed.train_step(first)
    eager.train_step(second)

    batch = second
    tensors = tuple(graphed._tensor(a) for a in (batch.real, batch.z_d, batch.z_g)) + (None,)
    calls = {"n": 0}
    step = graphed._train_step

    def counted(*args):
        calls["n"] += 1
        return step(*args)

    graphed._train_step = counted
    graphed._capture(tensors)
    assert calls["n"] == CUDA_GRAPH_WARMUP_STEPS + 1 and fake_cuda == ["graph"]  # ≥ 2 warm-ups, one capture

    want, got = _state(eager), _state(graphed)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # The Python step counts are those before the capture: only replays count.
    assert graphed._steps == {"discriminator": eager_steps_before * spec.n_critic, "generator": eager_steps_before}
