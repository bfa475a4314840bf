"""Cold start of the packaged Lambda: `import app` from deployment.zip, with and without
the bytecode `infra/precompile.py` adds.

    make package STAGE=dev
    python -m bench.package_import build/package/deployment.zip [--runs 11]

Not a section of `python -m bench`: it needs a package, and `chalice package` downloads
the Lambda platform's wheels on its first run; building one inside the benchmark would
time the network and fail without it.

The zip is extracted twice into temporary directories: once whole ("precompiled"), once
without its `__pycache__/*.pyc` entries ("sources", what Chalice alone ships). Each sample
is a fresh interpreter (`bench.coldstart.measure`: the "app" kind, the same clean
environment) with cwd = the extracted directory, as /var/task is on Lambda, and `-B`, so
that, as in the read-only /var/task, nothing is written and every sample of "sources"
compiles again. The arms alternate, after one discarded warm-up of each.

The package is built for the Lambda's machine (arm64); its native extensions are
replaced in the extracted copies by this interpreter's own builds of the same modules
(the versions match the venv's, which installs the same requirements). Bytecode is the
same on every machine, so what the lever saves is measured as it is; the native code is
the same in both arms. What the zip does not hold (boto3, the standard library) loads
from this interpreter's installation, compiled, in both arms: the Lambda runtime ships
those compiled too.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from bench.coldstart import child_environment, measure, summary

RUNS = 11

# The "app" kind run with `-B`: a read-only /var/task keeps no bytecode between runs.
FLAGS = ("-B",)


def extract(zip_path: Path, target: Path, with_bytecode: bool) -> int:
    """Extracts `zip_path` into `target` (without `__pycache__/*.pyc` entries unless
    `with_bytecode`); the number of pyc files extracted."""
    count = 0
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            is_pyc = "__pycache__/" in name and name.endswith(".pyc")
            if is_pyc and not with_bytecode:
                continue
            archive.extract(name, target)
            count += is_pyc
    return count


def use_host_extensions(tree: Path) -> list[str]:
    """Replaces each native extension in `tree` by this interpreter's build of the same
    module from its site-packages; the modules replaced. Fails if one has no such build."""
    site = Path(sysconfig.get_paths()["purelib"])
    replaced = []
    for native in sorted(tree.rglob("*.so")):
        relative = native.relative_to(tree)
        stem = relative.name.split(".", 1)[0]
        candidates = [
            site / relative.parent / (stem + suffix)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
        ]
        host = next((c for c in candidates if c.exists()), None)
        if host is None:
            raise RuntimeError(f"no build of {relative} for this machine under {site}")
        native.unlink()
        shutil.copyfile(host, native.with_name(host.name))
        replaced.append(str(relative.parent / stem))
    return replaced


def where_app_is(tree: Path, env: dict[str, str]) -> None:
    """Fails unless `import app` in `tree` loads the app of that tree (not, say, one the
    interpreter's site-packages could hold)."""
    found = subprocess.run(
        [sys.executable, *FLAGS, "-c", "import app; print(app.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(found).resolve() != (tree / "app.py").resolve():
        raise RuntimeError(f"import app in {tree} loaded {found}")


def run(zip_path: Path, runs: int = RUNS) -> dict[str, object]:
    env = child_environment()
    with tempfile.TemporaryDirectory(prefix="package-import-") as tmp:
        trees = {"sources": Path(tmp, "sources"), "precompiled": Path(tmp, "precompiled")}
        pycs = {arm: extract(zip_path, tree, arm == "precompiled") for arm, tree in trees.items()}
        if pycs["precompiled"] == 0:
            raise SystemExit(f"{zip_path} holds no bytecode: run infra/precompile.py on it")
        natives = use_host_extensions(trees["sources"])
        use_host_extensions(trees["precompiled"])

        for tree in trees.values():
            where_app_is(tree, env)

        def one(arm: str) -> float:
            return measure("app", env, cwd=trees[arm], flags=FLAGS)

        for arm in trees:  # warm-up, discarded (file cache)
            one(arm)
        samples: dict[str, list[float]] = {arm: [] for arm in trees}
        for i in range(runs):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for arm in order:
                samples[arm].append(one(arm))
    stats = {arm: summary(values) for arm, values in samples.items()}
    return {
        "import_app_sources_ms": round(stats["sources"]["median"], 1),
        "import_app_precompiled_ms": round(stats["precompiled"]["median"], 1),
        "saved_ms": round(stats["sources"]["median"] - stats["precompiled"]["median"], 1),
        "ratio": round(stats["precompiled"]["median"] / stats["sources"]["median"], 3),
        "runs_per_arm": runs,
        "pyc_files": pycs["precompiled"],
        "native_extensions_from_this_machine": natives,
        "stats_ms": {arm: {k: round(v, 1) for k, v in s.items()} for arm, s in stats.items()},
        "samples_ms": {arm: [round(v, 1) for v in values] for arm, values in samples.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.package_import")
    parser.add_argument("zip", type=Path, help="a precompiled deployment.zip")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"samples per arm ({RUNS})")
    args = parser.parse_args(argv)
    result = run(args.zip, args.runs)
    for name, value in result.items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
