"""One version for the Rust crate, the Python wheel and the npm packages (the main one and each
platform's addon package), everywhere it is written and at run time: Cargo.toml's workspace
version is the source; the wheel takes it from Cargo (maturin), `coopcache.__version__` and
Node's `version` export report it, and CHANGELOG.md's latest version heading is it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import List

import coopcache

ROOT = Path(__file__).resolve().parents[1]
SEMVER = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?"


def toml_section(text: str, name: str) -> str:
    """The body of `[name]` in a TOML file (up to the next table header)."""
    m = re.search(rf"^\[{re.escape(name)}\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert m, f"no [{name}] table"
    return m.group(1)


def version() -> str:
    section = toml_section((ROOT / "Cargo.toml").read_text(encoding="utf-8"), "workspace.package")
    m = re.search(rf'^version\s*=\s*"({SEMVER})"', section, re.M)
    assert m, "Cargo.toml: no version in [workspace.package]"
    return m.group(1)


def test_every_crate_takes_the_workspace_version() -> None:
    v = version()
    for manifest in ("core/Cargo.toml", "bindings-python/Cargo.toml", "bindings-node/Cargo.toml"):
        package = toml_section((ROOT / manifest).read_text(encoding="utf-8"), "package")
        assert re.search(r"^version\.workspace\s*=\s*true", package, re.M), f"{manifest}: another version"
    deps = toml_section((ROOT / "Cargo.toml").read_text(encoding="utf-8"), "workspace.dependencies")
    m = re.search(r'^coopcache\s*=\s*\{[^}]*version\s*=\s*"([^"]+)"', deps, re.M)
    assert m and m.group(1) == v, f"Cargo.toml [workspace.dependencies] coopcache: {m and m.group(1)} != {v}"
    lock = (ROOT / "Cargo.lock").read_text(encoding="utf-8")
    for crate in ("coopcache", "coopcache-python", "coopcache-node"):
        m = re.search(rf'^name = "{crate}"\nversion = "([^"]+)"', lock, re.M)
        assert m and m.group(1) == v, f"Cargo.lock {crate}: {m and m.group(1)} != {v}"


def test_the_wheel_takes_its_version_from_cargo() -> None:
    project = toml_section((ROOT / "pyproject.toml").read_text(encoding="utf-8"), "project")
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', project, re.M), "pyproject.toml: a dynamic version"
    assert not re.search(r"^version\s*=", project, re.M), "pyproject.toml: a static version"


def test_python_reports_the_version() -> None:
    v = version()
    assert metadata.version("coopcache") == v, "the installed wheel is stale (pip install . again)"
    assert coopcache.__version__ == v


def test_npm_package_and_lock_have_the_version() -> None:
    v = version()
    package = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
    assert package["version"] == v
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["version"] == v
    assert lock["packages"][""]["version"] == v


def test_npm_platform_packages_have_the_version() -> None:
    v = version()
    manifests = sorted((ROOT / "bindings-node" / "npm").glob("*/package.json"))
    assert len(manifests) == 7, [str(m) for m in manifests]
    for m in manifests:
        package = json.loads(m.read_text(encoding="utf-8"))
        assert package["version"] == v, f"{m.relative_to(ROOT)}: {package['version']} != {v}"


def node_says(tmp: Path, filename: str, code: str) -> str:
    node = shutil.which("node")
    assert node, "node is not on the PATH"
    modules = tmp / "node_modules"
    modules.mkdir(exist_ok=True)
    link = modules / "coopcache"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    (tmp / filename).write_text(code, encoding="utf-8")
    r = subprocess.run([node, filename], cwd=tmp, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_node_reports_the_version(tmp_path: Path) -> None:
    v = version()
    cjs = node_says(
        tmp_path, "v.cjs", "const c = require('coopcache'); console.log(c.version, c.default.version);\n"
    )
    assert cjs == f"{v} {v}"
    mjs = node_says(
        tmp_path,
        "v.mjs",
        "import c, { version } from 'coopcache';\nconsole.log(version, c.version);\n",
    )
    assert mjs == f"{v} {v}"
    types = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["types"]
    dts = (ROOT / types).read_text(encoding="utf-8")
    assert re.search(r"^export declare const version: string;", dts, re.M), f"{types}: the version export"


def changelog_versions() -> List[str]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.findall(rf"^##\s+\[?v?({SEMVER})\]?", text, re.M)


def test_changelog_latest_version_is_the_version() -> None:
    found = changelog_versions()
    assert found, "CHANGELOG.md has no version heading (`## X.Y.Z ...`) yet, only `## Unreleased`"
    assert found[0] == version(), f"CHANGELOG.md's latest version is {found[0]}, the packages' {version()}"
