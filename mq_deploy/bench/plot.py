"""The bench plot: prefill tokens/s against length (left), decode tokens/s (right), per backend."""

from __future__ import annotations

from ..plotting import figure_png, pyplot as _pyplot


def plot_bench_png(report: dict) -> bytes:
    """The plot as PNG bytes (tagged as ours, so a later --force may replace it)."""
    plt = _pyplot()
    rows = report["rows"]
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for name in backends:
        pre = [r for r in rows if r["backend"] == name and r["phase"] == "prefill"]
        left.plot([r["length"] for r in pre], [r["tokens_per_s"] for r in pre], marker="o", label=name)
    lengths = report["settings"]["lengths"]
    left.set_xscale("log", base=2)
    left.set_xticks(lengths, [str(n) for n in lengths])
    left.minorticks_off()
    left.set_ylim(bottom=0)
    left.set(xlabel="prefill length (tokens)", ylabel="tokens/s (median)",
             title=f"prefill, batch {report['settings']['batch']}")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    dec = {r["backend"]: r for r in rows if r["phase"] == "decode"}
    names = [n for n in backends if n in dec]
    right.barh(range(len(names)), [dec[n]["tokens_per_s"] for n in names],
               color=[f"C{backends.index(n)}" for n in names])
    right.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    right.set(xlabel="tokens/s (median step)", title="decode, one token per step")
    right.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return figure_png(plt, fig, dpi=110)
