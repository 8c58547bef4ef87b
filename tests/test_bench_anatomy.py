"""The anatomy of a step: the memory floor against a count by hand, HLO text counted, the record
assembled from a stand-in backend, and the summary's section on records whose enqueue and finish
times come from the simulated host-and-device (no framework, no process)."""

from __future__ import annotations

import pytest
from test_bench_batch import HostAndDevice, peak_record, step_record

from gan_backends import get_preset
from gan_backends.bench.anatomy import describe, ops_per_step, optimizer_words_per_param, state_bytes, step_bytes
from gan_backends.bench.report import markdown, table_rows
from gan_backends.bench.timing import time_dispatch
from gan_backends.hlo import count_hlo
from gan_backends.spec import AdamSpec, SGDSpec


def test_the_memory_floor_of_the_mlp_by_hand():
    """G: 1,486,352 parameters, 5,152 layer outputs per sample (256·2 + 512·2 + 1024·2 + 784·2:
    each Dense and its activation); D: 533,505 and 1,537 (512·2 + 256·2 + 1). Adam: 8 words per
    parameter per update. At batch 64: D update 8·533,505 + 64·(5,152 + 4·1,537) = 4,991,240;
    G update 8·1,486,352 + 64·(2·5,152 + 2·1,537) = 12,747,008; float32: 4 bytes."""
    spec = get_preset("mlp")
    assert step_bytes(spec, 64) == (4_991_240 + 12_747_008) * 4
    assert state_bytes(spec) == 4 * (1_486_352 + 533_505) * 4  # parameter, gradient, m, v
    assert optimizer_words_per_param(AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)) == 8
    assert optimizer_words_per_param(SGDSpec(lr=0.1)) == 4
    assert optimizer_words_per_param(SGDSpec(lr=0.1, momentum=0.9)) == 6
    assert step_bytes(spec, 128) - step_bytes(spec, 64) == 64 * (5_152 + 4 * 1_537 + 2 * 5_152 + 2 * 1_537) * 4


HLO = """HloModule jit_step, entry_computation_layout={(f32[8,4]{1,0})->f32[8]{0}}

%fused_computation (param_0: f32[8,4]) -> f32[8,4] {
  %param_0 = f32[8,4]{1,0} parameter(0)
  %constant = f32[] constant(2)
  ROOT %multiply = f32[8,4]{1,0} multiply(f32[8,4]{1,0} %param_0, f32[8,4]{1,0} %broadcast)
}

%region_0.1 (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add = f32[] add(f32[] %a, f32[] %b)
}

ENTRY %main.9 (Arg_0.1: f32[8,4]) -> (f32[8], f32[8,4]) {
  %Arg_0.1 = f32[8,4]{1,0} parameter(0)
  %fusion = f32[8,4]{1,0} fusion(f32[8,4]{1,0} %Arg_0.1), kind=kLoop, calls=%fused_computation
  %dot = f32[8,8]{1,0} dot(f32[8,4]{1,0} %fusion, f32[8,4]{1,0} %Arg_0.1), lhs_contracting_dims={1}
  %reduce = f32[8]{0} reduce(f32[8,8]{1,0} %dot, f32[] %c), dimensions={1}, to_apply=%region_0.1
  ROOT %tuple = (f32[8]{0}, f32[8,4]{1,0}) tuple(f32[8]{0} %reduce, f32[8,4]{1,0} %fusion)
}
"""


def test_hlo_text_is_counted():
    """Entry: parameter, fusion, dot, reduce, tuple (5; 3 launch work); the reduce's region adds
    3; the fused computation is the fusion's inside, not counted again."""
    assert count_hlo(HLO) == {"instructions": 8, "fusions": 1, "entry_instructions": 5, "launched": 3}


class StandIn:
    """A backend as the anatomy sees it: a device name and its own count (or a failing one)."""

    def __init__(self, device: str, counts: dict | Exception) -> None:
        self.device, self.counts = device, counts

    def step_anatomy(self, batch) -> dict:
        if isinstance(self.counts, Exception):
            raise self.counts
        return self.counts


def test_the_record_from_a_stand_in_backend():
    spec = get_preset("tiny")
    gpu = describe(spec, 64, StandIn("NVIDIA H200", {"source": "test", "kernels": 412, "aten_ops": 190}), None)
    assert gpu["bandwidth_bytes_per_s"] == 4.8e12 and gpu["bandwidth_source"] == "data sheet, H200"
    assert gpu["memory_floor_ms"] == pytest.approx(step_bytes(spec, 64) / 4.8e12 * 1e3)
    assert ops_per_step(gpu) == 412  # kernels first on a GPU
    cpu = describe(spec, 64, StandIn("cpu", RuntimeError("no profiler")), None)
    assert cpu["ops"] == {"source": "failed", "error": "RuntimeError: no profiler"}
    assert cpu["bandwidth_bytes_per_s"] > 0 and cpu["bandwidth_source"].startswith("measured")
    assert ops_per_step(cpu) is None
    unknown = describe(spec, 64, StandIn("SomeAccelerator", {"source": "test", "launched": 7}), None)
    assert unknown["memory_floor_ms"] is None and ops_per_step(unknown) == 7


def test_the_anatomy_section_on_the_simulated_device():
    """Enqueue and finish from the dispatch clock on the simulated device (host 1 ms to launch,
    device 10 ms to run); the FLOP floor 6.4 ms (64 · 1e7 FLOPs at 0.1 TFLOP/s), the memory
    floor 5 ms: the larger is the FLOP floor, and the 12 ms step is 1.9× it."""
    device = HostAndDevice(host_s=0.001, device_s=0.010)
    d = time_dispatch(device.step, device.sync, 3, clock=device.clock)
    record = step_record("torch", "eager", 64, 12.0)
    record["dispatch"] = d.to_dict()
    record["anatomy"] = {"ops": {"source": "test", "aten_ops": 187}, "memory_floor_ms": 5.0}
    (row,) = table_rows([peak_record(), record])
    assert row["ops_per_step"] == 187 and row["dispatch_ms"] == pytest.approx(1.0)
    assert row["finish_ms"] == pytest.approx(11.0) and row["memory_floor_ms"] == 5.0
    md = markdown([peak_record(), record], {})
    assert "## Anatomy of a step" in md
    assert "| torch | eager | 187 aten ops | 1 | 11 | 6.4 | 5 | 12 | 1.9× (FLOP) |" in md
    assert "## Anatomy of a step" not in markdown([peak_record(), step_record("jax", "jit", 64, 5.0)], {})
