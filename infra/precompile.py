"""Add compiled bytecode to a `chalice package` deployment.zip.

    python infra/precompile.py build/package

Chalice packages sources only, and a Lambda cannot write `__pycache__` into its
read-only /var/task, so without this every cold start compiles every module it imports.
For each `.py` in the zip this adds `<dir>/__pycache__/<name>.cpython-311.pyc` beside it
(optimisation level 0, as the runtime runs without -O). The pycs are unchecked-hash
based (PEP 552): the import system uses them without looking at the source's mtime,
which unzipping does not preserve. The sources stay in the zip, for tracebacks.

The bytecode has to be made by the runtime's Python minor version (its magic number and
cache tag), so the runtime of every function in the package's sam.json must be this
interpreter's; anything else is refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import py_compile
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

# Entries are written like Chalice writes its own: fixed time, 0644, deflated, in name
# order, so the same sources give the same zip from a fresh interpreter of the same
# Python (marshal's back-references follow refcounts, so a second compile of the same
# source in one process can differ in bytes, not in meaning).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o100644 << 16


class PrecompileError(Exception):
    pass


def this_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def check_runtime(template: dict[str, Any]) -> str:
    """The one Lambda runtime of the template's functions, if it is this interpreter's."""
    runtimes = {
        resource.get("Properties", {}).get("Runtime")
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    }
    if not runtimes:
        raise PrecompileError("the template defines no Lambda function")
    if runtimes != {this_runtime()}:
        raise PrecompileError(
            f"functions run on {sorted(map(str, runtimes))} but this is {this_runtime()}:"
            " bytecode would not be used; run with the runtime's Python"
        )
    return this_runtime()


def pyc_name(source: str) -> str:
    """`pkg/mod.py` -> `pkg/__pycache__/mod.cpython-311.pyc` (this interpreter's tag)."""
    cached = importlib.util.cache_from_source(source, optimization="")
    return PurePosixPath(Path(cached)).as_posix()


def precompile(zip_path: Path) -> list[str]:
    """Adds an unchecked-hash pyc for each `.py` entry of `zip_path` that has none; the
    names added, in order. A source that does not compile under this Python (a vendored
    Python 2 file, a template) is left without one, as compileall would."""
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        existing = set(names)
        sources = sorted(n for n in names if n.endswith(".py") and pyc_name(n) not in existing)
        with tempfile.TemporaryDirectory() as tmp:
            compiled: list[tuple[str, bytes]] = []
            for name in sources:
                source = Path(tmp, name)
                source.parent.mkdir(parents=True, exist_ok=True)
                source.write_bytes(archive.read(name))
                target = Path(tmp, pyc_name(name))
                try:
                    py_compile.compile(
                        str(source),
                        cfile=str(target),
                        # The path tracebacks show until the loader fixes it up to the
                        # real one: the entry's path, as it sits in /var/task.
                        dfile=name,
                        doraise=True,
                        optimize=0,
                        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                    )
                except py_compile.PyCompileError:
                    continue
                compiled.append((pyc_name(name), target.read_bytes()))
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in compiled:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = ZIP_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return [name for name, _ in compiled]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="chalice package output directory")
    args = parser.parse_args(argv)
    zip_path = args.package / "deployment.zip"
    try:
        check_runtime(json.loads((args.package / "sam.json").read_text()))
        before = zip_path.stat().st_size
        added = precompile(zip_path)
    except PrecompileError as error:
        print(f"precompile: {error}", file=sys.stderr)
        return 1
    after = zip_path.stat().st_size
    print(
        f"precompiled {len(added)} modules into {zip_path}:"
        f" {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
