"""torch's graph modes: the whole training step captured once as a CUDA graph (``cuda-graph``), and
the networks under ``torch.compile`` (``compile``; ``compile-cudagraphs``, whose compiled
forwards and backwards Inductor replays as CUDA graphs).

``cuda-graph``: both updates and both optimisers are recorded with ``torch.cuda.graph`` over
static input buffers; a replay launches the recorded kernels and nothing else, which removes the
Python and kernel-launch overhead of small networks on a GPU. Written as functions over what
they need (the step to capture, the tensors it updates in place, the device) and a small
:class:`GraphedStep` holding the graph, so that the
:class:`~gan_backends.backends.torch.backend.TorchBackend` keeps only its step counts and the
hooks (``_capture``, ``_train_step``) a test drives with CUDA's stream and graph calls stood in
for on a CPU. The compile helpers sit here beside it: the modes that trade eager calls for
recorded graphs are chosen, configured and reported on in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Modes that replay CUDA graphs: they exist only on a CUDA device.
CUDA_GRAPH_MODES = ("compile-cudagraphs", "cuda-graph")
#: Modes that call the networks through ``torch.compile``.
COMPILE_MODES = ("compile", "compile-cudagraphs")
#: Eager steps run on a side stream before the ``cuda-graph`` capture, as torch's CUDA-graph
#: notes prescribe (lazy state, cuBLAS workspaces and autograd's stream bookkeeping are set up
#: outside the capture); the state they change is restored before the capture.
CUDA_GRAPH_WARMUP_STEPS = 3

#: A training step's device inputs: ``real``, ``z_d``, ``z_g`` and (WGAN-GP only) ``alpha``.
StepInputs = tuple[torch.Tensor | None, ...]
#: A training step on :data:`StepInputs`, returning its loss terms as tensors.
TrainStep = Callable[..., dict[str, torch.Tensor]]


@dataclass
class StepGraph:
    """A captured training step: the graph, the static input tensors whose addresses it reads,
    and the loss tensors it writes."""

    graph: torch.cuda.CUDAGraph
    inputs: StepInputs
    outputs: dict[str, torch.Tensor]

    def fits(self, inputs: StepInputs) -> bool:
        shape = lambda t: None if t is None else (t.shape, t.dtype)  # noqa: E731
        return [shape(t) for t in self.inputs] == [shape(t) for t in inputs]


def staged_inputs(graph: StepGraph | None, inputs: StepInputs) -> StepInputs:
    """Where ``graph`` fits the shapes of ``inputs``, their values copied into its static buffers
    and the buffers returned (its replays then read them); otherwise ``inputs`` unchanged, to
    become the static buffers of the next capture."""
    if graph is None or not graph.fits(inputs):
        return inputs
    for static, value in zip(graph.inputs, inputs):
        if value is not None and value is not static:
            static.copy_(value)
    return graph.inputs


def training_state(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """Every tensor a training step updates in place: parameters, BatchNorm buffers and the
    optimisers' state (step counts, moments)."""
    tensors = [t for module in modules for t in (*module.parameters(), *module.buffers())]
    for opt in optimizers:
        tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def capture(
    train_step: TrainStep, inputs: StepInputs, state: Callable[[], list[torch.Tensor]], device: torch.device
) -> StepGraph:
    """Whole-network capture as torch's CUDA-graph notes write it: warm-up steps on a side
    stream, then ``torch.cuda.graph`` around one step, whose backward passes allocate the
    gradients (set to None by ``zero_grad``) from the graph's private pool. The warm-up
    trains, so everything it changed is put back first and the first replay is the step
    an eager backend would take: parameters, buffers and existing optimiser state by value,
    optimiser state created lazily during the warm-up to zero (torch's initial Adam/RMSprop
    state; for SGD momentum ``0·m + g`` equals the first step's ``m = g``).

    ``state()`` lists the tensors the step updates (:func:`training_state`), asked before and
    after the warm-up; ``train_step`` runs ``CUDA_GRAPH_WARMUP_STEPS + 1`` times in Python, so
    any host-side bookkeeping it does is the caller's to put back."""
    before = {id(t): (t, t.clone()) for t in state()}
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(CUDA_GRAPH_WARMUP_STEPS):
            train_step(*inputs)
    torch.cuda.current_stream(device).wait_stream(stream)
    with torch.no_grad():
        for t in state():
            if id(t) in before and before[id(t)][0] is t:
                t.copy_(before[id(t)][1])
            else:
                t.zero_()
    graph = torch.cuda.CUDAGraph()
    # The warm-up's stream again: cuBLAS keeps a workspace per stream, made on first use.
    with torch.cuda.graph(graph, stream=stream):
        outputs = train_step(*inputs)
    return StepGraph(graph, inputs, outputs)


class GraphedStep:
    """The ``cuda-graph`` mode's training step: the captured graph (None until the first step,
    and again once new parameters or optimiser state have made it stale) and the steps that
    replay it."""

    def __init__(self) -> None:
        self.graph: StepGraph | None = None

    def drop(self) -> None:
        """Forget the graph: it read tensors that have been replaced (the next step captures)."""
        self.graph = None

    def step_on(
        self, inputs: StepInputs, capture: Callable[[StepInputs], StepGraph], on_replay: Callable[[], None]
    ) -> Callable[[], dict[str, torch.Tensor]]:
        """``step()`` replaying the captured training step on ``inputs``. Where a captured graph
        fits their shapes, they are copied into its static buffers once, here, and ``step()`` is
        a replay and nothing else; otherwise the first ``step()`` captures (warm-up and capture
        then count in a benchmark's first step, as compilation does), ``inputs`` becoming the
        static buffers. A graph dropped since (new parameters or optimiser state) is captured
        again on the same buffers. ``capture(inputs)`` makes a graph (:func:`capture` with the
        backend's step and state); ``on_replay()`` follows every replay (the backend's step counts)."""
        inputs = staged_inputs(self.graph, inputs)

        def step() -> dict[str, torch.Tensor]:
            if self.graph is None or self.graph.inputs is not inputs:
                self.graph = capture(inputs)
            self.graph.graph.replay()
            on_replay()
            return self.graph.outputs

        return step


# -- torch.compile ("compile", "compile-cudagraphs") -----------------------------------------


def _raise_recompile_limit(limit: int = 64) -> None:
    """Dynamo keys its cache on the code object, and every ``nn.Sequential.forward`` shares one:
    G and D, grad and no-grad, D frozen or not, train or eval, float32 and float64 are each a
    variant. Past the default limit of 8, dynamo silently runs eager; raise it so ``compile``
    stays compiled."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))


def compile_networks(generator: nn.Module, discriminator: nn.Module, mode: str) -> tuple[Callable, Callable]:
    """Both networks under ``torch.compile`` for ``mode`` (one of :data:`COMPILE_MODES`)."""
    _raise_recompile_limit()
    # dynamic=False: G and D share CanonicalIO.forward's code object, so dynamo would
    # take their different input shapes for a varying shape and recompile with symbolic
    # sizes, which inductor fails on for convolutions (torch 2.13: "cannot determine
    # truth value of Relational"). Shapes are fixed by the spec; one graph per shape.
    # "reduce-overhead": each compiled forward and backward is replayed as a CUDA graph.
    options = {"mode": "reduce-overhead"} if mode == "compile-cudagraphs" else {}
    return (
        torch.compile(generator, dynamic=False, **options),
        torch.compile(discriminator, dynamic=False, **options),
    )


def compile_counts() -> dict[str, Any]:
    """Dynamo's own counts: graphs compiled and graph breaks (each break splits a network
    into separately compiled pieces with Python between them)."""
    counters = torch._dynamo.utils.counters
    return {
        "compiled_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        # reduce-overhead runs a compiled graph eagerly when it cannot be captured (CPU
        # tensors, mutated inputs ...): each such fallback is counted here.
        "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
    }
