"""The minimum Rust version of each feature of the core crate is what its docs say: the highest
`rust-version` among the dependencies that feature builds (clippy checks the crate's own code
against the crate's `rust-version`)."""

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "core" / "src" / "lib.rs"


def version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def stated() -> dict[str, str]:
    """The table in lib.rs's module docs: feature -> minimum Rust."""
    rows = re.findall(r"^//! \| (\(none\)|`\w+`) .*\| (\d+\.\d+)[^|]*\|$", LIB.read_text(), re.M)
    return {name.strip("`").replace("(none)", ""): v for name, v in rows}


def needed(feature: str, rust_versions: dict[tuple[str, str], str]) -> str:
    tree = subprocess.run(
        [
            "cargo",
            "tree",
            "-q",
            "-p",
            "coopcache",
            "-e",
            "normal,build",
            "--no-default-features",
            "--features",
            feature,
            "--prefix",
            "none",
            "-f",
            "{p}",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {"1.0"}
    for line in tree.splitlines():
        name, ver = line.split()[:2]
        if (rv := rust_versions.get((name, ver))) is not None:
            found.add(rv)
    return max(found, key=version)


def test_each_feature_needs_the_rust_the_docs_state() -> None:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "-q"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    rust_versions = {
        (p["name"], "v" + p["version"]): p["rust_version"] for p in meta["packages"] if p.get("rust_version")
    }
    table = stated()
    assert set(table) == {"", "shared", "redis", "tls", "json"}, table
    for feature, minimum in table.items():
        assert version(needed(feature, rust_versions)) == version(minimum), (feature, minimum)
