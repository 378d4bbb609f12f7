"""Draws one PNG per language from the benchmark JSON that `make bench` leaves in bench/results/:

    bench/results/rust.json    (bench/rust/run.sh)    -> docs/bench/rust.png
    bench/results/python.json  (bench/python/run.sh)  -> docs/bench/python.png
    bench/results/node.json    (bench/node/run.sh)    -> docs/bench/node.png
    bench/results/growth-*.json (bench/growth/run.sh) -> docs/bench/growth.png

Each PNG has two panels, hit latency (ns per hit) and memory per entry (bytes of RSS), with
coopcache highlighted against the anchors of that language. Lower is better in both. The growth
chart has the same two measures against the number of entries (10^4 to 10^7), one line per
language with its anchor dashed beside it.
Run: python bench/chart.py [--results DIR] [--out DIR]   (`make bench-charts`; needs matplotlib)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no GUI
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COOP, ANCHOR, REF = "#d9480f", "#adb5bd", "#495057"


class Panel(NamedTuple):
    title: str
    xlabel: str
    bars: List[Tuple[str, float]]  # (label, value); labels starting with "coopcache" are highlighted
    ref: Optional[Tuple[str, float]] = None  # a reference drawn as a dashed line (a floor)


# -- reading each harness's JSON ---------------------------------------------------------------


def note(runtime: str, cpus: Any, quick: Any) -> str:
    return f"{runtime}, {cpus} CPUs" + (", --quick (sizes cut ~10x: not meaningful)" if quick else "")


RUST_ANCHORS = ["coopcache", "quick_cache", "dashmap", "moka-sync", "moka-future"]


def rust(data: Dict[str, Any]) -> Tuple[Panel, Panel, str]:
    rows = [r for r in data["rows"] if r["contender"] in RUST_ANCHORS]
    names = {"moka-sync": "moka", "moka-future": "moka (future)", "dashmap": "DashMap"}

    def label(r: Dict[str, Any]) -> str:
        name = names.get(r["contender"], r["contender"])
        return f"{name} (async)" if r["mode"] == "async" and r["contender"] != "moka-future" else name

    def figures(scenario: str, field: str) -> List[Tuple[str, float]]:
        # Memory: the sync row of each crate (its async row stores the same), and moka's future cache.
        return [
            (label(r), r[field])
            for r in rows
            if r["scenario"] == scenario
            and field in r
            and (scenario == "hit" or r["mode"] == "sync" or r["contender"] == "moka-future")
        ]

    hit, mem = figures("hit", "uniform_1t_ns_per_op"), figures("memory", "rss_bytes_per_entry")
    meta = data.get("meta", {})
    return (
        Panel("hit: 100,000 warm keys, 1 thread, uniform", "ns per hit (lower is better)", hit),
        Panel(
            "memory: 1M entries u64 → [u8; 16]",
            "RSS bytes per entry (lower is better)",
            mem,
            ("key + value", 24.0),
        ),
        note(meta.get("rustc", "rustc ?"), meta.get("cpus", "?"), meta.get("quick")),
    )


PYTHON_ANCHORS = [
    "coopcache",
    "coopcache-keyfn",
    "functools.lru_cache",
    "cachebox",
    "moka_py",
    "theine",
    "dogpile.cache",
]


def python(data: Dict[str, Any]) -> Tuple[Panel, Panel, str]:
    def results(scenario: str, field: str) -> List[Tuple[str, float]]:
        got = data["scenarios"].get(scenario, {}).get("results", {})
        labels = {"coopcache": "coopcache (decorator)", "coopcache-keyfn": "coopcache (key=)"}
        return [(labels.get(n, n), got[n][field]) for n in PYTHON_ANCHORS if field in got.get(n, {})]

    def dict_ref(scenario: str, field: str) -> Optional[Tuple[str, float]]:
        r = data["scenarios"].get(scenario, {}).get("results", {}).get("baseline: dict", {})
        return ("dict", r[field]) if field in r else None

    m = data.get("machine", {})
    return (
        Panel(
            "hit: @cached f(i), warm int key",
            "ns per hit (lower is better)",
            results("hit", "ns_per_call_median"),
            dict_ref("hit", "ns_per_call_median"),
        ),
        Panel(
            "memory: 1M entries int → 100-byte bytes",
            "RSS bytes per entry (lower is better)",
            results("memory", "bytes_per_entry"),
            dict_ref("memory", "bytes_per_entry"),
        ),
        note(f"CPython {m.get('python', '?')}", m.get("cpus", "?"), data.get("quick")),
    )


def node(data: Dict[str, Any]) -> Tuple[Panel, Panel, str]:
    def results(scenario: str, field: str) -> List[Tuple[str, float]]:
        got = data["results"].get(scenario, {})
        anchors = ("coopcache", "lru-cache", "p-memoize")
        return [(n, r[field]) for n, r in got.items() if n.startswith(anchors) and is_number(r.get(field))]

    def ref(scenario: str, name: str, field: str, label: str) -> Optional[Tuple[str, float]]:
        r = data["results"].get(scenario, {}).get(name, {})
        return (label, r[field]) if is_number(r.get(field)) else None

    meta = data.get("meta", {})
    value = "100-byte Buffer" if meta.get("memValue") == "buffer" else "100-char string"
    return (
        Panel(
            "hit: await cached(key), one warm key",
            "ns per hit (lower is better)",
            results("hit", "nsPerOp"),
            ref("hit", "ref: await of a resolved promise", "nsPerOp", "bare await"),
        ),
        # RSS, not the JS heap alone: coopcache keeps its entries (not its values) in native memory.
        Panel(
            f"memory: 1M entries 'k<i>' → {value}",
            "RSS bytes per entry (lower is better)",
            results("memory", "rssPerEntry"),
            ref("memory", "ref: Map<key,value> (sync set)", "rssPerEntry", "Map"),
        ),
        note(f"Node {meta.get('node', '?')}", meta.get("cpus", "?"), meta.get("quick")),
    )


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


LANGUAGES: Dict[str, Tuple[str, Callable[[Dict[str, Any]], Tuple[Panel, Panel, str]]]] = {
    "rust": ("Rust: coopcache vs moka, quick_cache, DashMap", rust),
    "python": ("Python: coopcache vs lru_cache, cachebox, moka_py, theine, dogpile.cache", python),
    "node": ("Node: coopcache vs lru-cache, p-memoize", node),
}


# -- drawing -----------------------------------------------------------------------------------


def draw_panel(ax: Any, panel: Panel, rows: int) -> None:
    """Horizontal bars, best on top; `rows` keeps the bars of both panels equally thick."""
    top = 0.6 if panel.ref else 0.0  # room for the reference's label
    ax.set_title(panel.title, fontsize=10, loc="left")
    ax.set_xlabel(panel.xlabel, fontsize=9)
    if not panel.bars:
        ax.text(0.5, 0.5, "no figures in this run", ha="center", color=REF, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    bars = sorted(panel.bars, key=lambda b: b[1], reverse=True)  # the best ends up on top
    labels, values = [b[0] for b in bars], [b[1] for b in bars]
    colors = [COOP if label.startswith("coopcache") else ANCHOR for label in labels]
    ax.barh(labels, values, color=colors, height=0.65 * (len(values) + top) / (rows + top))
    for i, label in enumerate(ax.get_yticklabels()):
        if labels[i].startswith("coopcache"):
            label.set_fontweight("bold")
    low = min(values + ([panel.ref[1]] if panel.ref else []))
    log = max(values) / max(low, 1e-9) > 30  # e.g. 50 ns next to 9,000 ns: a log scale shows both
    if log:
        ax.set_xscale("log")
        ax.set_xlim(low / 2, max(values) * 3)
        ax.set_xlabel(panel.xlabel.replace(" (", ", log scale ("), fontsize=9)
    else:
        ax.set_xlim(0, max(values) * 1.18)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}" if v >= 10 else f" {v:.1f}", va="center", fontsize=8)
    if panel.ref is not None:
        name, v = panel.ref
        ax.axvline(v, color=REF, linestyle="--", linewidth=1)
        ax.text(v, len(values) - 0.45, f" {name}: {v:,.0f}", color=REF, fontsize=7.5, va="bottom")
    ax.set_ylim(-0.6, len(values) - 0.4 + top)
    ax.tick_params(axis="y", labelsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)


def draw(lang: str, data: Dict[str, Any], source: Path, out: Path) -> None:
    title, read = LANGUAGES[lang]
    hit, mem, footnote = read(data)
    rows = max(len(hit.bars), len(mem.bars), 4)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * rows + 1.8))
    draw_panel(axes[0], hit, rows)
    draw_panel(axes[1], mem, rows)
    fig.suptitle(title, fontsize=12, fontweight="bold", x=0.01, ha="left")
    fig.text(
        0.01,
        0.01,
        f"bench/results/{source.name}: {footnote}; one run of `make bench` "
        "(the machine and method: BENCHMARKS.md)",
        fontsize=7.5,
        color=REF,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(out, dpi=110)
    plt.close(fig)


# Each language's growth JSON: (coopcache's prefix, the anchor's prefix, the anchor's name).
GROWTH = {
    "rust": ("", "hashmap_", "HashMap"),
    "python": ("coopcache_", "lru_cache_", "lru_cache"),
    "node": ("coopcache_", "map_", "Map"),
}


def draw_growth(results: Path, out: Path) -> bool:
    """docs/bench/growth.png: hit ns and bytes per entry against entries, per language."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = {"rust": "#d9480f", "python": "#1971c2", "node": "#2f9e44"}
    drawn = []
    for lang, (coop, anchor, anchor_name) in GROWTH.items():
        source = results / f"growth-{lang}.json"
        if not source.exists():
            continue
        rows = json.loads(source.read_text())
        n = [r["entries"] for r in rows]
        for ax, measure in zip(axes, ("hit_ns", "bytes_per_entry")):
            coop_label = f"{lang}: coopcache"
            ax.plot(n, [r[coop + measure] for r in rows], "o-", color=colors[lang], label=coop_label)
            ax.plot(
                n,
                [r[anchor + measure] for r in rows],
                "o--",
                color=colors[lang],
                alpha=0.45,
                label=f"{lang}: {anchor_name}",
            )
        drawn.append(lang)
    if not drawn:
        plt.close(fig)
        return False
    titles = ("Hit latency, uniform random keys (ns)", "Resident memory per entry (bytes)")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_xlabel("entries")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7.5, loc="upper right")
    fig.suptitle("Costs as the cache grows", fontsize=12, fontweight="bold", x=0.01, ha="left")
    fig.text(
        0.01,
        0.01,
        "bench/results/growth-*.json: one run of `make bench-growth` (BENCHMARKS.md)",
        fontsize=7.5,
        color=REF,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(out / "growth.png", dpi=110)
    plt.close(fig)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="the JSON files' folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench", help="where the PNGs go")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for lang in LANGUAGES:
        source = args.results / f"{lang}.json"
        if not source.exists():
            print(f"{lang}: skipped, {source} not found (run `make bench-{lang}`)")
            continue
        out = args.out / f"{lang}.png"
        draw(lang, json.loads(source.read_text()), source, out)
        print(f"{lang}: {out}")
        drawn += 1
    if draw_growth(args.results, args.out):
        print(f"growth: {args.out / 'growth.png'}")
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
