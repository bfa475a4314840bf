"""The results table (stdout) and bench/results/latest.json.

latest.json:

    {
      "timestamp": "2026-01-01T12:00:00Z",          # this run, UTC, RFC 3339
      "machine": {"python": ..., "implementation": ..., "platform": ..., "cpu_count": ...},
      "sections": {
        "coldstart": {
          "measured_at": "...", "machine": {...},
          "figures": {"import_app_ms": 231.4, ...},  # flat name -> number
          "units": {"import_app_ms": "ms", ...},
          "goals": {"import_ratio": {"max": 1.2, "pass": true}},
          "info": {...}
        }
      },
      "figures": {"import_app_ms": 231.4, ...}       # every section's figures, flat
    }

With --only, sections that were not run keep their previous entry from latest.json.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LATEST = RESULTS / "latest.json"


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def goal_met(goal: dict[str, Any], value: float) -> bool:
    ok = True
    if "max" in goal:
        ok = ok and value <= goal["max"]
    if "min" in goal:
        ok = ok and value >= goal["min"]
    return ok


def goal_text(goal: dict[str, Any] | None) -> str:
    if not goal:
        return "-"
    parts = []
    if "min" in goal:
        parts.append(f">= {goal['min']:g}")
    if "max" in goal:
        parts.append(f"<= {goal['max']:g}")
    return ", ".join(parts)


def section_entry(
    result: dict[str, Any], measured_at: str, machine: dict[str, Any]
) -> dict[str, Any]:
    figures: dict[str, float] = dict(result["figures"])
    for name, value in figures.items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"figure {name} is not a finite number: {value!r}")
    goals: dict[str, dict[str, Any]] = {}
    for name, goal in result.get("goals", {}).items():
        if name not in figures:
            raise ValueError(f"goal for unknown figure {name}")
        goals[name] = {**goal, "pass": goal_met(goal, figures[name])}
    return {
        "measured_at": measured_at,
        "machine": machine,
        "figures": figures,
        "units": dict(result.get("units", {})),
        "goals": goals,
        "info": result.get("info", {}),
    }


def load_previous(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"[bench] ignoring unreadable {relative(path)}: {exc}", file=sys.stderr)
        return {}
    sections = data.get("sections") if isinstance(data, dict) else None
    return sections if isinstance(sections, dict) else {}


def flat_figures(sections: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    owner: dict[str, str] = {}
    for section, entry in sections.items():
        for name, value in entry.get("figures", {}).items():
            if name in flat:
                raise ValueError(f"figure {name} is in both {owner[name]} and {section}")
            flat[name] = value
            owner[name] = section
    return flat


def write(results: dict[str, dict[str, Any]], merge: bool, path: Path = LATEST) -> dict[str, Any]:
    """Write latest.json and return the document. merge=True (an --only run) keeps the
    previous entries of the sections that were not run."""
    timestamp = now_rfc3339()
    machine = machine_info()
    sections: dict[str, Any] = load_previous(path) if merge else {}
    for name, result in results.items():
        sections[name] = section_entry(result, timestamp, machine)
    document = {
        "timestamp": timestamp,
        "machine": machine,
        "sections": sections,
        "figures": flat_figures(sections),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return document


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(document: dict[str, Any], only: list[str] | None = None) -> None:
    """The figures of the given sections (default: all) as a table on stdout."""
    machine = document["machine"]
    print(
        f"\nbench {document['timestamp']}  python {machine['python']}  "
        f"{machine['platform']}  cpus {machine['cpu_count']}"
    )
    rows = [("section", "name", "value", "unit", "goal", "result")]
    for section, entry in document["sections"].items():
        if only is not None and section not in only:
            continue
        for name, value in entry["figures"].items():
            goal = entry.get("goals", {}).get(name)
            verdict = "-" if goal is None else ("PASS" if goal["pass"] else "FAIL")
            rows.append(
                (
                    section,
                    name,
                    format_value(value),
                    entry.get("units", {}).get(name, ""),
                    goal_text(goal),
                    verdict,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2}  # values right-aligned
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
