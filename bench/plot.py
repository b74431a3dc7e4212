"""plot.py: draws a ptxq-bench JSON file as a PNG (run through bench/plot).

Top: each GEMV shape and batch size m as a percent of the read ceiling
measured in the same run, cold (weights rotated through copies larger than
L2), hot (the same buffers again) and, where the file has them, graph (hot,
per product of 100 captured back to back) and graph-cold (the same graph
rotating through the copies). Bottom: the decode step per m, in
each mode the run measured. The title names the device, date and ceiling.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# The GEMV modes drawn, in this order, with their bars' (alpha, hatch).
GEMV_STYLE = {"cold": (1.0, ""), "hot": (0.45, "//"), "graph": (0.7, ".."), "graph-cold": (0.85, "xx")}
GEMV_KERNELS = ("q4k_gemv", "q6k_gemv", "q4k_gemv_tc", "q6k_gemv_tc")


def gemv_label(r):
    kind = {"q6k_gemv": "Q6_K", "q4k_gemv_tc": "Q4_K tc", "q6k_gemv_tc": "Q6_K tc"}.get(r["kernel"], "Q4_K")
    return f"{kind}\n{r['n']}x{r['k']}"


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: bench/plot RESULTS.json [OUT.png]", file=sys.stderr)
        return 2
    src = argv[1]
    out = argv[2] if len(argv) == 3 else (src[:-5] if src.endswith(".json") else src) + ".png"
    with open(src) as f:
        data = json.load(f)
    rows = data.get("results", [])
    gemv = [r for r in rows if r.get("kernel") in GEMV_KERNELS and r.get("mode") in GEMV_STYLE]
    steps = [r for r in rows if r.get("kernel") == "decode_step"]
    if not gemv and not steps:
        print(f"bench/plot: {src} has no GEMV or decode-step rows", file=sys.stderr)
        return 1

    shapes = list(dict.fromkeys(gemv_label(r) for r in gemv))
    ms = sorted({r["m"] for r in gemv})
    panels = (1 if gemv else 0) + (1 if steps else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(11, 4.2 * panels), squeeze=False)
    axes = [a[0] for a in axes]
    colors = plt.get_cmap("viridis")
    title = (f"ptxq-bench on {data.get('device', '?')}, {data.get('date', '?')[:10]}: "
             f"read ceiling {data.get('ceiling_gbps', 0) / 1000:.2f} TB/s measured in the same run")
    fig.suptitle(title, fontsize=11)

    if gemv:
        ax = axes[0]
        modes = [mode for mode in GEMV_STYLE if any(r["mode"] == mode for r in gemv)]
        bars = len(modes) * len(ms)
        width = 0.8 / bars
        for i, m in enumerate(ms):
            for j, mode in enumerate(modes):
                by_shape = {gemv_label(r): r["pct_of_ceiling"] for r in gemv if r["m"] == m and r["mode"] == mode}
                xs = [s + (len(modes) * i + j - (bars - 1) / 2) * width for s in range(len(shapes))]
                ys = [by_shape.get(s, 0) for s in shapes]
                alpha, hatch = GEMV_STYLE[mode]
                ax.bar(xs, ys, width, color=colors(i / max(1, len(ms) - 1) * 0.85), alpha=alpha, hatch=hatch,
                       label=f"m = {m}, {mode}")
        ax.set_xticks(range(len(shapes)), shapes, fontsize=9)
        ax.set_ylabel("% of the read ceiling")
        ax.set_ylim(0, 100)
        ax.axhline(100, color="black", linewidth=0.5)
        ax.set_title("GEMV (weights' bytes over the time of one product)", fontsize=10)
        ax.legend(ncol=len(ms), fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)

    if steps:
        ax = axes[-1]
        modes = list(dict.fromkeys(r["mode"] for r in steps))
        step_ms = sorted({r["m"] for r in steps})
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            by_m = {r["m"]: r["pct_of_ceiling"] for r in steps if r["mode"] == mode}
            xs = [x + (i - (len(modes) - 1) / 2) * width for x in range(len(step_ms))]
            ys = [by_m.get(m, 0) for m in step_ms]
            ax.bar(xs, ys, width, color=colors(i / max(1, len(modes) - 1) * 0.85), label=mode)
        layers = steps[0].get("layers", "?")
        # m 0: the step's bytes through the read probe (its yardstick), not a batch size
        ax.set_xticks(range(len(step_ms)), ["read probe" if m == 0 else f"m = {m}" for m in step_ms])
        ax.set_ylabel("% of the read ceiling")
        ax.set_ylim(0, 100)
        ax.set_title(f"decode step, {layers} Llama-3-8B layers (bytes of every weight over the step's time)",
                     fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
