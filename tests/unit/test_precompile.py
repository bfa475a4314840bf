"""infra/precompile.py: the packaged zip carries bytecode the Lambda runtime will use."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import precompile

ROOT = Path(__file__).resolve().parents[2]

SOURCES = {
    "app.py": "import pkg.mod\nVALUE = pkg.mod.VALUE + 1\n",
    "pkg/__init__.py": "",
    "pkg/mod.py": "VALUE = 41\n",
    "vendored/py2.py": "print 'not Python 3'\n",
    "pkg/data.txt": "not code\n",
}


def make_package(directory: Path, runtime: str = precompile.this_runtime()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / "deployment.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in SOURCES.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
    template = {
        "Resources": {
            "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": runtime}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    (directory / "sam.json").write_text(json.dumps(template))
    return directory / "deployment.zip"


def test_given_a_package_when_precompiled_then_each_compilable_source_gains_its_pyc_beside_it(
    tmp_path,
):
    zip_path = make_package(tmp_path)

    assert precompile.main([str(tmp_path)]) == 0

    tag = sys.implementation.cache_tag
    names = zipfile.ZipFile(zip_path).namelist()
    # The originals stay (tracebacks show their lines); the Python 2 file has no pyc.
    assert set(SOURCES) <= set(names)
    assert {n for n in names if n.endswith(".pyc")} == {
        f"__pycache__/app.{tag}.pyc",
        f"pkg/__pycache__/__init__.{tag}.pyc",
        f"pkg/__pycache__/mod.{tag}.pyc",
    }


def test_given_a_precompiled_pyc_then_it_is_unchecked_hash_based_bytecode_of_its_source(
    tmp_path,
):
    zip_path = make_package(tmp_path)
    precompile.precompile(zip_path)

    data = zipfile.ZipFile(zip_path).read(f"pkg/__pycache__/mod.{sys.implementation.cache_tag}.pyc")

    assert data[:4] == importlib.util.MAGIC_NUMBER
    # PEP 552 flags: bit 0 hash-based, bit 1 check_source; unchecked = 0b01, so the
    # loader never compares it with the source's mtime (which unzipping resets).
    assert int.from_bytes(data[4:8], "little") == 0b01
    assert data[8:16] == importlib.util.source_hash(SOURCES["pkg/mod.py"].encode())


def test_given_an_extracted_precompiled_zip_when_imported_without_writing_then_the_pycs_are_used(
    tmp_path,
):
    zip_path = make_package(tmp_path / "package")
    precompile.precompile(zip_path)
    task = tmp_path / "task"
    zipfile.ZipFile(zip_path).extractall(task)
    # Sources that no longer match their pyc: only an unchecked pyc is still loaded, so the
    # value shows which one ran. -B writes nothing, like a read-only /var/task.
    (task / "pkg" / "mod.py").write_text("VALUE = 0\n")

    out = subprocess.run(
        [sys.executable, "-B", "-c", "import app; print(app.VALUE)"],
        cwd=task,
        capture_output=True,
        text=True,
        check=True,
    )

    assert out.stdout.strip() == "42"


def test_given_a_precompiled_zip_when_precompiled_again_then_it_is_unchanged(tmp_path):
    zip_path = make_package(tmp_path)
    precompile.precompile(zip_path)
    first = zip_path.read_bytes()

    assert precompile.precompile(zip_path) == []
    assert zip_path.read_bytes() == first


def test_given_two_packages_of_the_same_sources_then_their_precompiled_zips_are_identical(
    tmp_path,
):
    zips = [make_package(tmp_path / name) for name in ("a", "b")]
    # As make runs it: a fresh interpreter each time. (Within one process a second
    # compile can marshal differently: marshal's back-references follow refcounts.)
    for zip_path in zips:
        subprocess.run(
            [sys.executable, str(ROOT / "infra" / "precompile.py"), str(zip_path.parent)],
            check=True,
            capture_output=True,
        )

    assert zips[0].read_bytes() == zips[1].read_bytes()


@pytest.mark.parametrize("runtime", ["python3.12", "python3.9"])
def test_given_functions_on_another_runtime_then_precompile_refuses_and_leaves_the_zip(
    tmp_path, runtime
):
    zip_path = make_package(tmp_path, runtime=runtime)
    before = zip_path.read_bytes()

    assert precompile.main([str(tmp_path)]) == 1

    assert zip_path.read_bytes() == before
