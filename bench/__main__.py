"""Run the benchmark sections, print a table, write bench/results/latest.json.

    python -m bench                         # every section
    python -m bench --only coldstart        # one section (repeatable)
    python -m bench --quick                 # fewer repetitions

To add a section, write a module with `run(quick: bool = False) -> dict` (see
bench/__init__.py for the dict) and add it to SECTIONS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from bench import report

# (name, module) in run order; modules are imported only when their section runs.
SECTIONS: list[tuple[str, str]] = [
    ("coldstart", "bench.coldstart"),
    ("purchases", "bench.purchases"),
    ("expiry", "bench.expiry"),
    ("tiers", "bench.tiers"),
    ("redemptions", "bench.redemptions"),
    ("ratelimits", "bench.ratelimits"),
    ("privacy", "bench.privacy"),
]


def main(argv: list[str] | None = None) -> int:
    names = [name for name, _ in SECTIONS]
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks.")
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this section (repeatable); one of: {', '.join(names)}",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)

    selected = [(n, m) for n, m in SECTIONS if not args.only or n in args.only]
    results: dict[str, dict[str, Any]] = {}
    for name, module_name in selected:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(module_name)
        results[name] = module.run(quick=args.quick)

    document = report.write(results, merge=bool(args.only))
    report.print_table(document, only=list(results))
    print(f"\nwritten: {report.relative(report.LATEST)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
