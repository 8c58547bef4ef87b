"""Disturbed runs in the reports: the ``⚠ disturbed`` marker of a row and the footnote below a
table that says why (the rule: :mod:`.contention`)."""

from __future__ import annotations

from typing import Any

MARK = "⚠ disturbed"


def row_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The contention columns of a record's flat row (None for records without the field)."""
    c = record.get("contention")
    if not c:
        return {"disturbed": None, "others_share": None, "involuntary_per_s": None, "disturbed_because": None}
    return {
        "disturbed": bool(c.get("disturbed")),
        "others_share": c.get("others_share"),
        "involuntary_per_s": c.get("involuntary_per_s"),
        "disturbed_because": "; ".join(c.get("reasons") or []) or None,
    }


def mode_cell(row: dict[str, Any]) -> str:
    """The mode, marked when its run was disturbed."""
    return f"{row['mode']} {MARK}" if row.get("disturbed") else str(row["mode"])


def footnote(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines below a table with disturbed rows: which, and why (empty without any)."""
    marked = [r for r in rows if r.get("disturbed")]
    if not marked:
        return []
    lines = [
        f"{MARK}: another process competed with the run's timed blocks (rule in "
        "`gan_backends/bench/contention.py`); its time is not this backend's alone. "
        "`gan-backends bench --rerun-disturbed` with the same options measures it again.",
        "",
    ]
    lines += [f"- `{r['backend']}/{r['mode']}`: {r['disturbed_because']}" for r in marked]
    return [*lines, ""]


def caption(rows: list[dict[str, Any]]) -> str | None:
    """The rich table's caption: how many of its rows were disturbed, and what to do."""
    n = sum(1 for r in rows if r.get("disturbed"))
    if not n:
        return None
    runs = f"{n} run{'s' if n > 1 else ''}"
    return f"{MARK}: {runs} competed with another process (summary.md says why; --rerun-disturbed)"


def progress_suffix(record: dict[str, Any]) -> str:
    """Appended to a run's progress line when its timed blocks were disturbed."""
    c = record.get("contention") or {}
    if not c.get("disturbed"):
        return ""
    return f" [yellow]{MARK}[/] ({'; '.join(c.get('reasons') or [])})"
