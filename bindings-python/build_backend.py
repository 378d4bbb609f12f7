"""The Python package's PEP 517 build backend: maturin's, after a check that Rust is there.

pip builds from source only where no wheel fits (or when asked to). Without cargo, maturin would
fetch a helper that downloads a Rust toolchain, and print dozens of lines before failing on a
machine without internet; this says in one line what a source build needs and where wheels are.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, List, Mapping, Optional

import maturin

# The hooks that need no check of their own: pip asks for the build requirements first.
from maturin import (  # noqa: F401
    build_editable,
    build_sdist,
    build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

NEEDS_RUST = (
    "coopcache: building from source needs Rust 1.85+ (cargo is not on the PATH): install it with rustup "
    "(https://rustup.rs) or your system's packages; prebuilt wheels (CPython 3.9+, Linux x86_64 and aarch64 "
    "glibc and musl, macOS x86_64 and arm64, Windows x64) install without it"
)


def _require_rust() -> None:
    if not (os.environ.get("CARGO") or shutil.which("cargo")):
        raise SystemExit(NEEDS_RUST)


def get_requires_for_build_wheel(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    _require_rust()
    return list(maturin.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_sdist(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    _require_rust()
    return list(maturin.get_requires_for_build_sdist(config_settings))


def get_requires_for_build_editable(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    _require_rust()
    return list(maturin.get_requires_for_build_editable(config_settings))
