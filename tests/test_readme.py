"""Every code snippet of README.md runs as written.

```python blocks run with this Python (the .venv's under `make test-readme`), ```js / ```javascript /
```mjs / ```cjs blocks with `node`, each from a file of its own in a temporary folder where
`node_modules/coopcache` links to the repository root (so `require('coopcache')` and
`import ... from 'coopcache'` resolve as in a user's project), with the repository root as the
working directory. ```rust blocks are the core crate's doc tests (`core/src/lib.rs` includes the
README); the last test here runs them too, against a Redis of its own.

A snippet that mentions REDIS_URL gets a fresh `redis-server` on a free loopback port in that
variable, and must have written to it. A line that prints (`print(`, `console.log(`) may end with
a comment `# -> TEXT` or `// -> TEXT`: the output must have a line TEXT, in that order.

A snippet may be skipped only with `<!-- not run: REASON -->` on the line before its fence.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
import redis_server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

LANGS = {
    "python": "python",
    "py": "python",
    "js": "js",
    "javascript": "js",
    "mjs": "js",
    "cjs": "js",
    "rust": "rust",
}
#: Fences that are not programs: shell sessions, output, tables of text, Cargo.toml lines
#: (tests/test_repository.py checks those against the Rust blocks).
NOT_CODE = {"sh", "bash", "shell", "console", "text", "txt", "toml", ""}
SKIP = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->$")
EXPECT = re.compile(r"(?:#|//)\s*->\s*(?P<text>.*?)\s*$")
PRINTS = re.compile(r"\bprint\(|\bconsole\.log\(")


@dataclass
class Snippet:
    lang: str
    info: str
    line: int  # of the opening fence, 1-based
    code: str
    skip: Optional[str]

    @property
    def id(self) -> str:
        return f"{self.lang}@README.md:{self.line}"

    @property
    def needs_redis(self) -> bool:
        return "REDIS_URL" in self.code

    def expected(self) -> List[str]:
        out = []
        for line in self.code.splitlines():
            if PRINTS.search(line):
                m = EXPECT.search(line)
                if m:
                    out.append(m.group("text"))
        return out


def snippets(text: str) -> List[Snippet]:
    found: List[Snippet] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(.*)$", lines[i])
        if not fence:
            i += 1
            continue
        ticks, info = fence.group(1), fence.group(2).strip()
        start = i
        body: List[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(ticks):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: unclosed code fence"
        i += 1
        word = re.split(r"[,\s]", info, maxsplit=1)[0].lower()
        if word in NOT_CODE:
            continue
        assert word in LANGS, f"README.md:{start + 1}: a ```{word} block this test does not know how to run"
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        m = SKIP.match(prev)
        found.append(Snippet(LANGS[word], info, start + 1, "\n".join(body) + "\n", m and m.group("reason")))
    return found


ALL = snippets(README.read_text(encoding="utf-8"))
RUNNABLE = [s for s in ALL if s.lang in ("python", "js")]


@pytest.fixture
def redis_port() -> Iterator[int]:
    """A fresh redis-server on a free loopback port."""
    with redis_server.running() as port:
        yield port


def env_for(port: Optional[int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "COOPCACHE_SECRET", "NODE_PATH")}
    if port is not None:
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}"
    return env


def js_module_kind(code: str, info: str) -> str:
    if info.startswith("cjs"):
        return "cjs"
    if info.startswith("mjs") or re.search(r"^\s*(import|export)\s", code, re.M):
        return "mjs"
    return "cjs"


def run_snippet(s: Snippet, tmp: Path, port: Optional[int]) -> subprocess.CompletedProcess:
    if s.lang == "python":
        path = tmp / "snippet.py"
        path.write_text(s.code, encoding="utf-8")
        cmd = [sys.executable, str(path)]
    else:
        node = shutil.which("node")
        assert node, "node is not on the PATH"
        modules = tmp / "node_modules"
        modules.mkdir()
        (modules / "coopcache").symlink_to(ROOT, target_is_directory=True)
        path = tmp / f"snippet.{js_module_kind(s.code, s.info)}"
        path.write_text(s.code, encoding="utf-8")
        cmd = [node, str(path)]
    return subprocess.run(cmd, cwd=ROOT, env=env_for(port), capture_output=True, text=True, timeout=300)


def check_output(s: Snippet, out: str) -> None:
    lines = [line.rstrip() for line in out.splitlines()]
    at = 0
    for want in s.expected():
        for j in range(at, len(lines)):
            if lines[j] == want:
                at = j + 1
                break
        else:
            raise AssertionError(f"{s.id}: expected a line {want!r} (in order) in its output:\n{out}")
    if PRINTS.search(s.code):
        assert out.strip(), f"{s.id} prints, but printed nothing"


def test_the_readme_has_snippets_in_every_language() -> None:
    langs = {s.lang for s in ALL}
    assert {"python", "js", "rust"} <= langs, langs
    assert any(s.expected() for s in RUNNABLE if s.lang == "python")
    assert any(s.expected() for s in RUNNABLE if s.lang == "js")
    for s in ALL:
        if s.skip is None:
            assert "no_run" not in s.info and "ignore" not in s.info, (
                f"{s.id}: ```{s.info} does not run; make it run, or say why with <!-- not run: ... -->"
            )


@pytest.mark.parametrize("s", RUNNABLE, ids=[s.id for s in RUNNABLE])
def test_snippet_runs(s: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if s.skip is not None:
        pytest.skip(f"README says: not run: {s.skip}")
    port = request.getfixturevalue("redis_port") if s.needs_redis else None
    r = run_snippet(s, tmp_path, port)
    assert r.returncode == 0, (
        f"{s.id} failed (exit {r.returncode}):\n{s.code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    )
    check_output(s, r.stdout)
    if port is not None:
        stored = redis_server.cli(port, "--scan", "--pattern", "coopcache:*:v:*")
        assert stored, f"{s.id} reads REDIS_URL but stored nothing in that Redis:\n{r.stdout}\n{r.stderr}"


def test_rust_snippets_run_as_doc_tests(redis_port: int) -> None:
    """The README's Rust blocks are the core's doc tests; run them, the shared one on Redis."""
    lib = (ROOT / "core" / "src" / "lib.rs").read_text(encoding="utf-8")
    assert 'include_str!("../../README.md")' in lib
    rust = [s for s in ALL if s.lang == "rust" and s.skip is None]
    r = subprocess.run(
        ["cargo", "test", "-q", "-p", "coopcache", "--release", "--features", "redis,tls,json"]
        + ["--doc", "ReadmeDoctests"],
        cwd=ROOT,
        env=env_for(redis_port),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, f"README doc tests failed:\n{r.stdout}\n{r.stderr}"
    m = re.search(r"test result: ok\. (\d+) passed", r.stdout)
    assert m and int(m.group(1)) == len(rust), f"expected {len(rust)} README doc tests to run:\n{r.stdout}"
    if any(s.needs_redis for s in rust):
        assert redis_server.cli(redis_port, "--scan", "--pattern", "coopcache:*:v:*"), (
            "the README's Rust shared-mode snippet stored nothing in REDIS_URL's Redis"
        )
