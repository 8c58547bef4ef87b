"""Summarise `gan-backends check --json` reports as a Markdown table: the worst relative error
of each kind (value, loss, grad, param) per backend pair, with the device, and (schema v2) the
first backend's worst lock-step update error against the float64 reference.

    python benchmarks/summarize_check.py results/check-*.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

KINDS = ("value", "loss", "grad", "param")
COLUMNS = (*KINDS, "lock-step")


def summarize(path: str) -> list[str]:
    report = json.load(open(path))
    devices = {b["name"]: f"{b['device']} ({b['mode']}, {b['dtype']})" for b in report["backends"]}
    numerics = report["spec"]["numerics"]
    loss = report["spec"]["loss"]
    loss_name = loss["name"] + ("" if loss.get("penalty", "none") == "none" else f"+{loss['penalty']}")
    loss_name += f" clip {loss['clip_value']}" if loss.get("clip_value") else ""
    lines = []
    for pair in report["pairs"]:
        worst: dict[str, float] = defaultdict(float)
        drift_judged = False
        for row in pair["rows"]:
            rel = row["rel"] if row["rel"] is not None else float("nan")
            worst[row["kind"]] = max(worst[row["kind"]], rel)
            drift_judged |= bool(row["note"]) and row["passed"]
        lock = report.get("lock_step", {}).get("backends", {}).get(pair["a"])
        worst["lock-step"] = (
            max((r["rel"] or float("nan") for r in lock["rows"]), default=float("nan")) if lock else float("nan")
        )
        cells = " | ".join(f"{worst[k]:.1e}" if worst[k] == worst[k] else "-" for k in COLUMNS)
        verdict = ("PASS" if pair["passed"] else "FAIL") + (
            " (kinks judged by own float32 error)" if drift_judged else ""
        )
        lines.append(
            f"| {report['spec']['name']} {loss_name} | {pair['a']} vs {pair['b']} | {devices[pair['a']]}"
            f" | {numerics['dtype']}/{numerics['matmul_precision']}"
            f" | {cells} | {verdict} |"
        )
    return lines


if __name__ == "__main__":
    print("| spec, loss | pair | device of the first | dtype/precision | " + " | ".join(COLUMNS) + " | verdict |")
    print("|---|---|---|---|" + "---|" * (len(COLUMNS) + 1))
    for path in sys.argv[1:]:
        print("\n".join(summarize(path)))
