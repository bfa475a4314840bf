"""Benchmark harness: `python -m bench` (or `make bench`).

A section is a module with `run(quick: bool = False) -> dict`, registered in
`bench.__main__.SECTIONS`. The dict it returns has:

- "figures": flat name -> number, e.g. {"import_app_ms": 231.4}; names are unique across
  all sections, because they are also merged into the top-level "figures" of
  bench/results/latest.json;
- "units":   name -> unit shown in the table ("ms", "x", ...);
- "goals":   name -> {"max": number} and/or {"min": number}; bench.report adds "pass";
- "info":    optional, anything JSON-serialisable that explains how it was measured.

Sections measure and report; they never assert on timings.
"""
