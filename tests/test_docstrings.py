"""Every public Python name shows a docstring in help(), the type stubs document what they
declare, and every export of the npm package's types (package.json's `types`,
bindings-node/js/index.d.ts) has TSDoc."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from pathlib import Path

import coopcache
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "bindings-python" / "python" / "coopcache" / "_native.pyi"
TYPES = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["types"]


@pytest.mark.parametrize("name", coopcache.__all__)
def test_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(coopcache, name)
    if isinstance(obj, logging.Logger):
        assert obj.name == "coopcache"  # documented by a `#:` comment; help() shows Logger's
        return
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"coopcache.{name} has no docstring"
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            assert inspect.getdoc(value), f"coopcache.{name}.{attr} has no docstring"


def test_stubs_document_the_public_api() -> None:
    tree = ast.parse(STUBS.read_text(encoding="utf-8"))
    public = set(coopcache.__all__)
    missing = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in public:
            members = [node]
            if isinstance(node, ast.ClassDef):
                members += [
                    m
                    for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                ]
            for m in members:
                if ast.get_docstring(m) is None:
                    missing.append(m.name if m is node else f"{node.name}.{m.name}")
    # An overloaded function is documented once, on any of its overloads.
    documented = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(n) is not None
    }
    missing = [m for m in missing if m.rsplit(".", 1)[-1] not in documented]
    assert not missing, f"_native.pyi: no docstring for {missing}"


def test_every_typescript_export_has_tsdoc() -> None:
    text = (ROOT / TYPES).read_text(encoding="utf-8")
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^export (?:declare )?(?:function|const|class|interface|type) (\w+)", line)
        if not m:
            continue
        prev = lines[i - 1].strip() if i else ""
        if not prev.endswith("*/"):
            missing.append(m.group(1))
    assert not missing, f"{TYPES}: exports without TSDoc: {sorted(set(missing))}"
    for setting in ("memoryLimit", "cacheDuration", "whenFull", "maxConcurrency", "serializer", "leaseTtl"):
        doc = re.search(rf"/\*\*((?:(?!\*/).)*)\*/\s*{setting}\?:", text, re.S)
        assert doc and "Default" in doc.group(1), f"{TYPES}: Settings.{setting} documents its default"
