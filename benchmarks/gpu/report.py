"""The proof's short tables: ``summary.md`` (rewritten after every result) and the final stdout.

One row per check (framework × spec × precision: its verdict and the group nearest to its
tolerance) and one per step run (backend × mode × spec × batch × precision: the median step,
the first step with its compile, the samples per second), with the seconds each took against
its budget. Nothing here runs anything; it reads the rows of ``check.jsonl`` and ``steps.jsonl``.
"""

from __future__ import annotations

import re
from typing import Any

#: Statuses that make the proof's answer "no" (exit 1): a check that disagreed or could not
#: run its backend, a step run that failed. Timeouts, skips, absent frameworks and unavailable
#: modes are recorded with their reasons and do not.
CHECK_FAILED = ("failed", "error", "crashed")
STEP_FAILED = ("error", "nan", "crashed")


def failures(checks: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[str]:
    bad = [r["key"] for r in checks if r.get("status") in CHECK_FAILED]
    return bad + [r["key"] for r in steps if r.get("status") in STEP_FAILED]


def _worst(row: dict[str, Any]) -> str:
    groups = row.get("groups") or []
    if not groups:
        return "-"
    g = max(groups, key=lambda g: (g["rel"] if g["rel"] is not None else float("inf")) / g["tol"])
    rel = "nan" if g["rel"] is None else f"{g['rel']:.1e}"
    return f"{g['group']} {rel} / {g['tol']:.0e}"


def _seconds(row: dict[str, Any]) -> str:
    if row.get("status") in ("unavailable", "absent"):  # known without a process: no time spent
        return "-"
    took = row.get("seconds")
    if took is None:
        took = (row.get("proof") or {}).get("seconds")
    budget = row.get("budget_s", (row.get("proof") or {}).get("budget_s"))
    return ("-" if took is None else f"{took:.1f}") + (f" / {budget:.0f}" if budget is not None else "")


def check_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| framework | spec | precision | status | worst group: rel / tol | s / budget |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['framework']} | {r['spec']} | {r['precision']} | {r['status']} | {_worst(r)} | {_seconds(r)} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3g}"


def step_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| spec | batch | precision | backend | mode | status | ms/step | first step s | samples/s | s / budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["config"]
        first = (r.get("timing") or {}).get("first_step_s")
        rate = r.get("samples_per_s")
        lines.append(
            f"| {c['spec']} | {c['batch_size']} | {c['precision']} | {c['backend']} | {c['mode']} | {r['status']} "
            f"| {_ms(r.get('step_s'))} | {'-' if first is None else f'{first:.2f}'} "
            f"| {'-' if rate is None else f'{rate:.3g}'} | {_seconds(r)} |"
        )
    return lines


def reasons(rows: list[dict[str, Any]]) -> list[str]:
    """One line per kind of reason a part did not pass or run (its figures left out: "its
    budget of N s" for every skipped run), with how many parts it covers; the rows of the
    tables' files hold each part's own."""
    seen: dict[str, int] = {}
    for r in rows:
        if r.get("reason") and r.get("status") not in ("passed", "ok"):
            why = re.sub(r" \([^()]*\d[^()]*\)$", "", f"{r['status']}: {r['reason']}")
            why = re.sub(r"-?\d+(\.\d+)? s\b", "N s", why)
            seen[why] = seen.get(why, 0) + 1
    return [f"- {why}" + (f" (×{n})" if n > 1 else "") for why, n in seen.items()]


def markdown(meta: dict[str, Any], checks: list[dict[str, Any]], steps: list[dict[str, Any]]) -> str:
    proof = meta["proof"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in meta["plan"]["stage_budgets_s"].items())
    ended = f", {proof['wall_s']:.1f} s, exit {proof['exit_code']}" if "wall_s" in proof else ""
    head = [
        f"# GPU proof: plan `{proof['plan']}` on `{proof['device']}`",
        "",
        f"Deadline {proof['deadline_s']:g} s; stated stage budgets: {stages}. State: {proof['state']}{ended}.",
        "",
        "## Agreement against the float64 reference (stage 1)",
        "",
    ]
    body = check_table(checks) + ["", "## Training step (stages 2 and 3)", ""] + step_table(steps)
    why = reasons(checks + steps)
    return "\n".join(head + body + (["", "## Why a part did not pass or run", "", *why] if why else [])) + "\n"
