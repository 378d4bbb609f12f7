"""Every Python snippet of README.md and every example in examples/python type-checks as a user's
code would: `mypy --strict` and `pyright` against the installed package's hints, each snippet a
module of its own. A hint that rejects (or mistypes) the documented use is a bug in the hints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

from test_readme import ALL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "python").glob("*.py"))


def sources(tmp: Path) -> List[Path]:
    """The README's Python snippets (as readme_<line>.py) and the examples, copied into `tmp`."""
    out = []
    for s in ALL:
        if s.lang == "python":
            p = tmp / f"readme_{s.line}.py"
            p.write_text(s.code, encoding="utf-8")
            out.append(p)
    for e in EXAMPLES:
        p = tmp / e.name
        shutil.copyfile(e, p)
        out.append(p)
    assert len(out) > len(EXAMPLES), "no Python snippet found in README.md"
    return out


def check(cmd: List[str], tmp: Path) -> None:
    r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd[:3])} rejects the documented code:\n{r.stdout}{r.stderr}"


def test_mypy_strict_accepts_every_snippet_and_example(tmp_path: Path) -> None:
    files = sources(tmp_path)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null"]
    check([*mypy, *map(str, files)], tmp_path)


def test_pyright_accepts_every_snippet_and_example(tmp_path: Path) -> None:
    files = sources(tmp_path)
    check([sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *map(str, files)], tmp_path)
