"""Plot the fidelity benchmark's ghost-size curves (issue 23): gap closed by the default
plan at each ghost batch, one line per pair, from rows saved by ``fidelity.py --out``.

Usage (from the repository root)::

    python benchmarks/fidelity_plot.py docs/fidelity/issue23/*.json \
        --out docs/fidelity/ghost-curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    import fidelity_count

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+", help="rows saved by fidelity.py --out")
    ap.add_argument("--out", required=True, help="the PNG to write")
    args = ap.parse_args(argv)
    rows = []
    for path in args.json:
        rows += json.loads(Path(path).read_text())["rows"]
    labels = sorted({r["pair"] for r in rows})
    curves = {label: fidelity_count.ghost_curve(rows, label) for label in labels}
    curves = {k: v for k, v in curves.items() if len(v) >= 2}
    if not curves:
        print("no pair has two or more ghost sizes: nothing to plot", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, pts in curves.items():
        g = [p[0] for p in pts]
        closed = [100 * p[1] for p in pts]
        line, = ax.plot(g, closed, marker="o", label=f"{label} (seeds: "
                        f"{'/'.join(str(p[2]) for p in pts)})")
        for gi, ci, *_, default in pts:
            if default:
                ax.plot([gi], [100 * ci], marker="*", markersize=16, color=line.get_color())
    ax.axhline(90, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(100, color="grey", linestyle=":", linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xscale("log", base=2)
    sizes = sorted({p[0] for pts in curves.values() for p in pts})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("ghost batch (samples per BatchNorm statistic)")
    ax.set_ylabel("gap closed, % (small = 100, naive = 0)")
    ax.set_title("Default plan at each ghost size (★ = the plan's default)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
