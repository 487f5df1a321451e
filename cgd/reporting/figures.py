"""Stage 07: the paper's figures from pipeline outputs, with one colour per method everywhere.

Each figure reads only metrics the pipeline wrote (stage 05's DVCLive curves, stage 06's metrics);
a figure whose inputs do not exist is not drawn, and INDEX.md says "not run" and what enables it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cgd.config import methods as registry
from cgd.data import benchmarks
from cgd.reporting import tables


def palette() -> dict[str, tuple]:
    """The same colour for a method in every figure (seaborn's colour-blind palette)."""
    import seaborn as sns

    colours = sns.color_palette("colorblind", 10)
    return {m.name: colours[m.colour] for m in registry.REGISTRY}


def empty_panels(fig) -> list[str]:
    """Panels (axes) that would read as blank: no bar of non-zero height, no line or marker, no
    image, and no value printed on them. A bar at 0 must carry its value as text, so a panel of
    zeros reads "0" and never looks like a figure that failed to draw."""
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    blank = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        shown = bool(ax.texts)
        for artist in ax.get_children():
            if shown:
                break
            if isinstance(artist, Rectangle) and artist is not ax.patch:
                shown = artist.get_visible() and artist.get_height() != 0 and artist.get_width() != 0
            elif isinstance(artist, Line2D):
                x, y = artist.get_data()
                shown = artist.get_visible() and np.isfinite(np.asarray(y, dtype=float)).any()
            elif isinstance(artist, AxesImage):
                shown = artist.get_visible()
            elif isinstance(artist, Collection):
                shown = artist.get_visible() and (len(artist.get_offsets()) > 0 or len(artist.get_paths()) > 0)
        if not shown:
            blank.append(ax.get_title() or f"panel {i + 1}")
    return blank


def save(fig, stem: str | Path, formats: list[str], dpi: int) -> list[Path]:
    """Write the figure in each format; a figure with a blank panel is refused (`empty_panels`)."""
    blank = empty_panels(fig)
    if blank:
        raise ValueError(f"{Path(stem).name}: panel(s) {blank} would be blank; label their values "
                         "(a zero is a value) or leave the panel out")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if fmt == "pdf" else None)
        paths.append(path)
    return paths


def accuracy_frame(metrics: dict[str, dict]):
    """One row per (method, benchmark) with the seed-mean accuracy and its 95% CI (percent)."""
    import pandas as pd

    runs = tables.by_method(metrics)
    names = [b for b in benchmarks.REGISTRY if any(b in m.get("benchmarks", {}) for m in metrics.values())]
    rows = []
    for method in registry.ordered(runs):
        for bench in names:
            mean, lo, hi = tables.run_value(runs[method], bench)
            if mean is not None:
                rows.append({"method": method, "benchmark": bench, "title": benchmarks.REGISTRY[bench].title,
                             "accuracy": mean, "ci_low": lo if lo is not None else mean,
                             "ci_high": hi if hi is not None else mean, "seeds": len(runs[method])})
    return pd.DataFrame(rows)


def _y_top(frame) -> float:
    """Headroom over the highest CI instead of a fixed 0-100, so small accuracies stay legible."""
    return min(100.0, max(10.0, float(frame.ci_high.max()) * 1.2 + 2)) if len(frame) else 100.0


def method_bars(frame, methods: list[str], title: str):
    """Grouped bars: benchmarks on x, one bar per method, 95% CIs as error bars."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    colours = palette()
    frame = frame[frame.method.isin(methods)]
    benches = list(dict.fromkeys(frame.title))
    present = [m for m in methods if m in set(frame.method)]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(benches) + 1.5), 3.4))
    width = 0.8 / max(len(present), 1)
    for i, method in enumerate(present):
        d = frame[frame.method == method].set_index("title").reindex(benches)
        x = np.arange(len(benches)) + (i - (len(present) - 1) / 2) * width
        err = np.vstack([(d.accuracy - d.ci_low).fillna(0), (d.ci_high - d.accuracy).fillna(0)])
        ax.bar(x, d.accuracy, width, color=colours[method], label=registry.label(method), yerr=err, capsize=2,
               error_kw={"elinewidth": 0.8})
        ax.bar_label(ax.containers[-1], fmt="%.0f", padding=2, fontsize="x-small")
    ax.set_xticks(np.arange(len(benches)), benches)
    top = _y_top(frame)
    ax.set(ylabel="accuracy (%), 95% CI", ylim=(0, top), title=title)
    ax.legend(frameon=False, fontsize="small", ncols=min(len(present), 3), loc="upper center",
              bbox_to_anchor=(0.5, -0.1))  # below the axes: never over a bar
    fig.tight_layout()
    return fig


def training_curves(train_dir: str | Path, methods: list[str], seed: int = 0):
    """Per-step training loss over normalized progress (0..1), read from stage 05's DVCLive files."""
    import pandas as pd

    frames = []
    for method in methods:
        folder = Path(train_dir) / f"{method}-seed{seed}" / "plots" / "metrics"
        if not (folder / "loss.tsv").exists():
            continue
        loss = pd.read_csv(folder / "loss.tsv", sep="\t")
        progress = pd.read_csv(folder / "progress.tsv", sep="\t")
        frames.append(loss.merge(progress, on="step").assign(method=method))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["step", "loss", "progress", "method"])


def loss_plot(curves, title: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    colours = palette()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for method, d in curves.groupby("method", sort=False):
        sns.lineplot(data=d, x="progress", y="loss", ax=ax, color=colours[method], label=registry.label(method),
                     marker="o", markersize=3, seed=0)
    ax.set(xlabel="training progress (fraction of optimizer steps)", ylabel="loss (completion tokens)",
           title=title, xlim=(0, 1))
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def drift_frame(metrics: dict[str, dict]):
    """Per method (seed mean): % of greedy answers that read as a critique, and with no final answer."""
    import pandas as pd

    rows = []
    for method, runs in tables.by_method(metrics).items():
        for key, label in (("critique_like_pct", "reads as a critique"),
                           ("no_final_answer_pct", "no final answer")):
            values = [m["format_drift"][key] for m in runs if m.get("format_drift", {}).get(key) is not None]
            if values:
                rows.append({"method": method, "kind": label, "percent": sum(values) / len(values),
                             "outputs": sum(m["format_drift"]["outputs"] for m in runs)})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["order"] = frame.method.map({m: i for i, m in enumerate(registry.NAMES)})
        frame = frame.sort_values(["order", "kind"]).drop(columns="order")
    return frame


def drift_plot(frame, title: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    colours = palette()
    kinds = list(dict.fromkeys(frame.kind))
    methods = list(dict.fromkeys(frame.method))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.0 * len(kinds) + 1, 3.2), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        d = frame[frame.kind == kind]
        sns.barplot(data=d, x="method", y="percent", hue="method", order=methods, hue_order=methods,
                    palette=colours, ax=ax, legend=False, seed=0)
        for bars in ax.containers:  # every bar's value, 0 included: an all-zero panel reads "0", not blank
            ax.bar_label(bars, fmt="%.0f", padding=2, fontsize="x-small")
        ax.set_xticks(range(len(methods)), [registry.label(m) for m in methods], rotation=30, ha="right")
        ax.set(title=kind, xlabel="", ylabel="share of answers (%)", ylim=(0, 100))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curve_plot(frame, methods: list[str], x_label: str, title: str, log_x: bool = False):
    """Accuracy against an ablation's axis (Figs. 5, 6, 7): one panel per method, one line per
    benchmark with its 95% interval; a Fig. 5 "avg" line is drawn bold."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    methods = [m for m in methods if m in set(frame.method)]
    benches = [b for b in [*benchmarks.REGISTRY, "avg"] if b in set(frame.benchmark)]
    colours = dict(zip(benches, sns.color_palette("colorblind", len(benches))))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods) + 0.8, 3.3), sharey=True,
                             squeeze=False)
    for i, (ax, method) in enumerate(zip(axes[0], methods)):
        for bench in benches:
            d = frame[(frame.method == method) & (frame.benchmark == bench)].sort_values("x")
            if d.empty:
                continue
            avg = bench == "avg"
            label = "math average" if avg else benchmarks.REGISTRY[bench].title
            ax.errorbar(d.x, d.accuracy, yerr=[d.accuracy - d.ci_low, d.ci_high - d.accuracy],
                        color="black" if avg else colours[bench], marker="o", markersize=4, capsize=3,
                        linewidth=2.2 if avg else 1.2, alpha=1.0 if avg or "avg" not in benches else 0.5,
                        label=label)
        if log_x:
            ax.set_xscale("log")
        ax.margins(x=0.08)
        xs = sorted(set(frame[frame.method == method].x))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        panel = f"({chr(97 + i)}) {registry.label(method)}" if len(methods) > 1 else registry.label(method)
        ax.set(xlabel=x_label, ylabel="accuracy (%), 95% CI" if i == 0 else "", title=panel)
    top = _y_top(frame)
    axes[0][0].set_ylim(-0.02 * top, top)  # a point at 0% stays visible above the axis
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, fontsize="small", loc="lower center",
               ncols=min(len(labels), 4), bbox_to_anchor=(0.5, -0.02 - 0.05 * (len(labels) > 4)))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 + 0.05 * (len(labels) > 4), 1, 1))
    return fig


# ---------------------------------------------------------------- Appendix C (stage 08's outputs)

SECTION_LABELS = {"problem": "Problem", "student_answer": "Student Answer", "critique": "Critique",
                  "other": "Other (template, answer so far)"}


def attention_frame(npz_path: str | Path):
    """Long form of stage 08's attention.npz: one row per (row, step, layer, section) with its share (%)."""
    import pandas as pd

    from cgd.evaluation.diagnostics import SECTIONS

    parts = []
    with np.load(npz_path) as arrays:
        for row_id in arrays.files:
            a = arrays[row_id]  # [step, layer, section]
            steps, layers, sections = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]),
                                                  np.arange(a.shape[2]), indexing="ij")
            parts.append(pd.DataFrame({"row": row_id, "step": steps.ravel(), "layer": layers.ravel(),
                                       "section": np.asarray(SECTIONS)[sections.ravel()],
                                       "share": 100 * a.ravel()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["row", "step", "layer", "section", "share"])


def _layers_shown(n_layers: int) -> list[int]:
    """First, middle and last layer (the paper shows 0, 16, 31 of 32), plus a quarter when room."""
    return sorted({0, n_layers // 4, n_layers // 2, n_layers - 1})


def _section_palette() -> dict[str, tuple]:
    import seaborn as sns

    colours = sns.color_palette("colorblind", 8)
    # blue, orange, green for the three sections; grey for everything else
    return dict(zip(SECTION_LABELS.values(), [colours[0], colours[1], colours[2], colours[7]]))


def attention_flow(frame, title: str):
    """Fig. 9: attention share per section over generation steps, one panel per layer shown,
    95% CIs over rows."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    layers = _layers_shown(int(frame.layer.max()) + 1)
    data = frame[frame.layer.isin(layers)].assign(section=lambda f: f.section.map(SECTION_LABELS))
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3.6), sharey=True, squeeze=False)
    for ax, layer in zip(axes[0], layers):
        sns.lineplot(data=data[data.layer == layer], x="step", y="share", hue="section",
                     palette=_section_palette(), errorbar=("ci", 95), n_boot=250, seed=0, ax=ax,
                     legend=layer == layers[-1])  # seeded bootstrap: the same PNG on every rerun
        # (250 resamples, not seaborn's 1000: one per step x section x layer, 10 s of stage 07 at 1000)
        ax.set(title=f"layer {layer}", xlabel="generated token", ylabel="attention share (%)", ylim=(0, 100))
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title=None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_by_layer(frame, title: str):
    """Fig. 10: mean attention share per section at every layer (mean over steps, then rows; 95% CI)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    per_row = (frame.groupby(["row", "layer", "section"], as_index=False)["share"].mean()
               .assign(section=lambda f: f.section.map(SECTION_LABELS)))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sns.lineplot(data=per_row, x="layer", y="share", hue="section", palette=_section_palette(),
                 errorbar=("ci", 95), seed=0, marker="o", ax=ax)
    ax.set(xlabel="layer", ylabel="mean attention share (%)", ylim=(0, 100), title=title)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=None)
    fig.tight_layout()
    return fig


def attention_phases(frame, phases: int, title: str):
    """Fig. 11: heatmaps of mean share by section (rows) and generation phase (columns: equal
    slices of each row's generation) for the first, middle and last layer."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    n_layers = int(frame.layer.max()) + 1
    layers = sorted({0, n_layers // 2, n_layers - 1})
    steps = frame.groupby("row")["step"].transform("max") + 1
    data = frame.assign(phase=(frame.step * phases // steps) + 1,
                        section=frame.section.map(SECTION_LABELS))
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        grid = (data[data.layer == layer].groupby(["row", "section", "phase"])["share"].mean()
                .groupby(["section", "phase"]).mean().unstack("phase")
                .reindex(list(SECTION_LABELS.values())))
        sns.heatmap(grid, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", cbar=layer == layers[-1],
                    ax=ax)
        ax.set(title=f"layer {layer}", xlabel="generation phase", ylabel="" if layer else "section")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def counterfactual_bars(table11: dict, title: str):
    """Table 11 as a figure: accuracy with factual vs counterfactual critiques, per model (95% CIs)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    conditions = ["factual", "counterfactual"]
    colours = palette()
    width = 0.38
    for i, model in enumerate(table11):
        for j, cond in enumerate(conditions):
            cell = table11[model][cond]
            mean = cell["mean"] or 0.0
            err = None if cell["ci_low"] is None else [[mean - cell["ci_low"]], [cell["ci_high"] - mean]]
            x = i + (j - 0.5) * width
            ax.bar(x, mean, width, yerr=err, capsize=4, color=colours.get(model),
                   alpha=1.0 if cond == "factual" else 0.45, edgecolor="black",
                   label=cond if i == 0 else None)
            ax.annotate(f"{mean:.0f}% (n={cell['n']})", (x, mean), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=8)
    ax.set_xticks(range(len(table11)), [registry.label(m) for m in table11])
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.legend(title="critique", loc="upper right")
    fig.tight_layout()
    return fig


def _paired_points(ax, x, cells: list, colour, label: str) -> None:
    """Paired differences (tables.Cell rows of a Δ row) at `x` with their 95% CIs, each annotated
    with its value and McNemar p."""
    y = np.array([np.nan if c.run is None else c.run for c in cells], dtype=float)
    lo = np.array([np.nan if c.ci_low is None else c.ci_low for c in cells], dtype=float)
    hi = np.array([np.nan if c.ci_high is None else c.ci_high for c in cells], dtype=float)
    err = np.nan_to_num(np.vstack([y - lo, hi - y]))  # no interval: the point alone
    ax.errorbar(x, y, yerr=err, fmt="o", color=colour, capsize=3, label=label)
    for xi, cell in zip(x, cells):
        if cell.run is None:
            continue
        p = "" if cell.p_value is None else f"\np={cell.p_value:.2g}"
        ax.annotate(f"{cell.run:+.1f}{p}", (xi, cell.run), xytext=(4, 0), textcoords="offset points",
                    fontsize="x-small", va="center")


def flaw_source_plot(rows: dict[str, dict], methods: list[str], sources: list[str], title: str):
    """The flaw-source table as a figure (beyond the paper): per method, the paired accuracy
    difference (y' by each source - by the student itself) with its 95% CI per benchmark and group
    average; last, each source's share of incorrect y' and its critiques' accuracy."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    colours = dict(zip([tables.OWN, *sources], sns.color_palette("colorblind", len(sources) + 1)))
    stats_cols = ["incorrect_yprime", "critique_accuracy"]
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.6 * (len(methods) + 1) + 1.0, 3.6), squeeze=False)
    for ax, method in zip(axes[0], methods):
        cols = [c for c in rows[f"{method}@yprime={tables.OWN}"] if c not in tables.FLAW_DATA_COLUMNS
                and any(rows[f"delta_{method}@yprime={s}"][c].run is not None for s in sources)]
        width = 0.8 / max(len(sources), 1)
        for i, source in enumerate(sources):
            cells = [rows[f"delta_{method}@yprime={source}"][c] for c in cols]
            x = np.arange(len(cols)) + (i - (len(sources) - 1) / 2) * width
            _paired_points(ax, x, cells, colours[source], source)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(cols)), [tables.column_title(c) for c in cols])
        name = registry.label(method)
        ax.set(ylabel="accuracy difference (points), 95% CI",
               title=f"{name}: y′ by another model − by the student")
        ax.legend(frameon=False, fontsize="small", title="y′ by")
    ax = axes[0][-1]
    shown = [tables.OWN, *sources]
    width = 0.8 / len(shown)
    first = rows[f"{methods[0]}@yprime={tables.OWN}"] if methods else {}
    for i, source in enumerate(shown):
        cells = rows.get(f"{methods[0]}@yprime={source}", first) if methods else {}
        values = [cells[c].run if c in cells and cells[c].run is not None else np.nan for c in stats_cols]
        x = np.arange(len(stats_cols)) + (i - (len(shown) - 1) / 2) * width
        bars = ax.bar(x, values, width, color=colours[source],
                      label="the student itself" if source == tables.OWN else source)
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.0f}" for v in values], padding=2,
                     fontsize="x-small")
    ax.set_xticks(np.arange(len(stats_cols)), [tables.column_title(c) for c in stats_cols])
    ax.set(ylabel="%", ylim=(0, 110), title="What each source's data hold")
    ax.legend(frameon=False, fontsize="small", title="y′ by")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def critique_content_plot(rows: dict[str, dict], methods: list[str], variants: list[str], title: str):
    """The critique-content table as a figure: per method, each variant's paired accuracy difference
    to A (the main run's critiques) with its 95% CI per benchmark; the release's difference of means
    as a hollow marker where it reports the benchmark."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from cgd.distill.critique_content import LETTERS, TITLES

    sns.set_theme(style="whitegrid", context="paper")
    colours = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.8 * len(methods) + 1.0, 3.8), squeeze=False)
    for ax, method in zip(axes[0], methods):
        cols = [c for c in rows[f"{method}@content=relevant"]
                if any(rows[f"delta_{method}@content={v}"][c].run is not None for v in variants)]
        width = 0.8 / max(len(variants), 1)
        for i, variant in enumerate(variants):
            cells = [rows[f"delta_{method}@content={variant}"][c] for c in cols]
            x = np.arange(len(cols)) + (i - (len(variants) - 1) / 2) * width
            _paired_points(ax, x, cells, colours[variant], f"{LETTERS[variant]} − A: {TITLES[variant]}")
            paper_y = np.array([np.nan if c.paper is None else c.paper for c in cells], dtype=float)
            if not np.isnan(paper_y).all():
                ax.scatter(x, paper_y, marker="D", facecolors="none", edgecolors=colours[variant],
                           label=f"{LETTERS[variant]} − A, release (ref.)")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(cols)), [tables.column_title(c) for c in cols])
        ax.set(ylabel="accuracy difference (points), 95% CI", title=registry.label(method))
        ax.legend(frameon=False, fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
