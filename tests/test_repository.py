"""The repository as a newcomer finds it: the README's Rust is pasteable as written, the docs refer
only to what is in the repository, the licenses are there, CONTRIBUTING's map matches the tree,
and `make lint` / `make demo` work in a fresh clone without touching tracked files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> List[str]:
    return re.findall(r"^```" + lang + r"\n(.*?)^```", README, flags=re.S | re.M)


def test_readme_rust_blocks_are_whole_programs() -> None:
    """No rustdoc-hidden lines (`# ...`) and no `?` outside a function: each block is a main.rs."""
    rust = blocks("rust")
    assert rust, "the README has Rust blocks"
    for b in rust:
        hidden = [line for line in b.splitlines() if line.startswith("# ") or line == "#"]
        assert not hidden, f"a README Rust block has lines rustdoc hides, so a paste lacks them: {hidden}"
        assert re.search(r"^fn main\(\)", b, flags=re.M), f"a README Rust block is not a whole program:\n{b}"


def test_readme_says_how_to_depend_on_the_crate_with_the_features_each_block_uses() -> None:
    assert "cargo add coopcache" in README
    toml = "\n".join(blocks("toml"))
    for b in blocks("rust"):
        if "SharedSettings" in b:
            m = re.search(r"^coopcache = \{.*features = \[(.*?)\]", toml, flags=re.M)
            assert m, "the README's Cargo.toml lines give coopcache's features"
            assert {'"redis"', '"json"'} <= {f.strip() for f in m.group(1).split(",")}
        if "serde::" in b:
            assert re.search(r'^serde = \{.*"derive"', toml, flags=re.M), "serde with its derive feature"


def shipped_text_files() -> List[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    exts = {".rs", ".py", ".pyi", ".js", ".mjs", ".ts", ".md", ".toml", ".json"}
    return [ROOT / p for p in out.splitlines() if Path(p).suffix in exts and (ROOT / p).is_file()]


def test_nothing_refers_to_a_spec_outside_the_repository() -> None:
    """The contract users read is the README (Semantics, Shared mode, Options)."""
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in shipped_text_files()
        if p != Path(__file__).resolve()
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bSPEC\b", line)
    ]
    assert not offenders, f"references to a SPEC that is not in the repository: {offenders}"


def test_the_declared_licenses_are_in_the_repository() -> None:
    assert 'license = "MIT OR Apache-2.0"' in (ROOT / "Cargo.toml").read_text()
    assert "license.workspace = true" in (ROOT / "core" / "Cargo.toml").read_text()
    for name in ("LICENSE-MIT", "LICENSE-APACHE"):
        assert (ROOT / name).stat().st_size > 500, name


def test_contributing_maps_every_layer_and_names_only_paths_that_exist() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    layers_rs = (ROOT / "core/tests/layers.rs").read_text()
    layers = re.search(r"const LAYERS: &\[&str\] = &\[(.*?)\];", layers_rs, re.S)
    assert layers
    for module in re.findall(r'"(\w+)"', layers.group(1)):
        assert f"`{module}`" in text, f"CONTRIBUTING.md's map leaves out the core's `{module}` layer"
    for path in re.findall(r"`((?:core|bindings-python|bindings-node|tests)/[\w./-]*)`", text):
        assert (ROOT / path).exists(), f"CONTRIBUTING.md names {path}, which does not exist"


def makefile_rule(target: str) -> str:
    m = re.search(rf"^{target}:(.*?)(?=^\S|\Z)", (ROOT / "Makefile").read_text(), flags=re.S | re.M)
    assert m, target
    return m.group(1)


def test_make_lint_sets_up_what_it_runs() -> None:
    """`make lint` in a fresh clone: ruff needs the venv, tsc needs node_modules."""
    prerequisites = makefile_rule("lint").split("##")[0].split()
    assert {"python-env", "node-env"} <= set(prerequisites), prerequisites


def test_node_env_never_rewrites_the_lockfile_and_builds_say_so() -> None:
    """`make demo` (and every target on node-env) installs from the lockfile as it is (npm ci), and
    the minutes-long source builds announce themselves instead of being silent."""
    node_env = makefile_rule("node-env")
    assert re.search(r"^\tnpm ci\b", node_env, flags=re.M), node_env
    assert not re.search(r"^\tnpm install\b", node_env, flags=re.M)
    for target in ("node-env", "python-env"):
        assert re.search(r"^\t@echo .*building", makefile_rule(target), flags=re.M), target
