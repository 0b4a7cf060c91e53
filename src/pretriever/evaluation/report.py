"""Evaluation results as an aligned text table or as JSON: the same numbers either way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pretriever.evaluation.measures import Evaluation
from pretriever.evaluation.significance import Comparison


def format_table(
    evaluations: Sequence[Evaluation],
    comparisons: Sequence[Comparison] = (),
    *,
    digits: int = 4,
) -> str:
    """One row per run, one column per metric; ``*`` marks a significant difference to the baseline.

    The marker applies to the metric the comparisons were computed on; a legend line says which
    test and baseline were used.
    """
    if not evaluations:
        return ""
    metrics = list(evaluations[0].metrics)
    marks = {(c.name, c.metric): c for c in comparisons}
    header = ["run", *metrics, "queries"]
    rows = []
    for ev in evaluations:
        cells = [ev.name]
        for m in metrics:
            value = f"{ev.metrics[m]:.{digits}f}"
            c = marks.get((ev.name, m))
            if c is not None:
                value += "*" if c.significant else " "
            elif comparisons:
                value += " "
            cells.append(value)
        cells.append(str(ev.n_queries))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(r, widths))))
    if comparisons:
        c0 = comparisons[0]
        tested = ", ".join(dict.fromkeys(c.metric for c in comparisons))
        lines.append(
            f"* p < {c0.alpha} against '{c0.baseline}' on {tested} (paired {c0.test} test, per query)"
        )
        for c in comparisons:
            lines.append(f"  {c.name}: {c.metric} {c.delta:+.4f}, p = {c.p_value:.4g}")
    for ev in evaluations:
        for note in ev.notes:
            lines.append(f"note ({ev.name}): {note}")
    return "\n".join(lines)


def to_json(
    evaluations: Sequence[Evaluation],
    comparisons: Sequence[Comparison] = (),
    *,
    per_query: bool = False,
    **context: Any,
) -> dict[str, Any]:
    """One JSON object; with a single run its ``metrics`` key maps metric names to values."""
    out: dict[str, Any] = dict(context)
    if len(evaluations) == 1:
        out.update(evaluations[0].to_dict(per_query=per_query))
    else:
        out["metrics"] = evaluations[0].metrics if evaluations else {}
        out["runs"] = [ev.to_dict(per_query=per_query) for ev in evaluations]
    if comparisons:
        out["significance"] = [
            {"run": c.name, "baseline": c.baseline, "metric": c.metric, "delta": c.delta,
             "p_value": c.p_value, "significant": c.significant, "test": c.test, "alpha": c.alpha}
            for c in comparisons
        ]
    return out


def bar_chart(evaluations: Sequence[Evaluation], metrics: Sequence[str], path: Any, title: str) -> None:
    """A grouped bar chart (PNG) of ``metrics`` per system, written atomically (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        from pretriever.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", extra="report", feature="report charts") from None
    from pretriever._io import atomic_file

    names = [ev.name for ev in evaluations]
    width = 0.8 / max(1, len(metrics))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.6), dpi=120)
    for i, metric in enumerate(metrics):
        values = [ev.metrics[metric] for ev in evaluations]
        xs = [j + (i - (len(metrics) - 1) / 2) * width for j in range(len(names))]
        bars = ax.bar(xs, values, width=width * 0.95, label=metric)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.18)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=len(metrics), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)


def markdown_table(evaluations: Sequence[Evaluation], comparisons: Sequence[Comparison] = ()) -> str:
    """The leaderboard as a markdown table, with the significance marker and p-values."""
    metrics = list(evaluations[0].metrics)
    marks = {(c.name, c.metric): c for c in comparisons}
    lines = ["| system | " + " | ".join(metrics) + " | p (vs baseline) |",
             "|---|" + "---:|" * len(metrics) + "---:|"]
    for ev in evaluations:
        cells = []
        p_text = "baseline" if comparisons and ev.name == comparisons[0].baseline else ""
        for m in metrics:
            c = marks.get((ev.name, m))
            cells.append(f"{ev.metrics[m]:.4f}" + ("*" if c is not None and c.significant else ""))
            if c is not None:
                p_text = f"{c.p_value:.4g}"
        lines.append(f"| {ev.name} | " + " | ".join(cells) + f" | {p_text} |")
    return "\n".join(lines)
