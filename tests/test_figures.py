"""No figure has a panel that reads as blank (cgd/reporting/figures.py `empty_panels`, which `save` enforces):
a bar at 0 carries its value as text, so a panel of zeros reads "0" and never looks like a figure
that failed to draw. Checked on all-zero inputs and on the committed metrics the committed figures
were drawn from."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cgd.reporting import (
    figures,
    tables,  # noqa: E402
)
from cgd.runtime import io
from tests.conftest import REPO  # noqa: E402


def test_a_panel_of_unlabelled_zero_bars_is_blank_and_save_refuses_it(tmp_path):
    fig, (left, right) = plt.subplots(1, 2)
    left.bar([0, 1], [0.0, 0.0])
    left.set_title("reads as a critique")
    right.bar([0, 1], [3.0, 0.0])
    assert figures.empty_panels(fig) == ["reads as a critique"]
    with pytest.raises(ValueError, match="reads as a critique"):
        figures.save(fig, tmp_path / "f", ["png"], 50)
    left.bar_label(left.containers[0], fmt="%.0f")
    assert figures.empty_panels(fig) == []
    plt.close(fig)


def _zero_metrics() -> dict:
    """Two methods whose every accuracy and drift share is 0, in stage 06's metrics layout."""
    committed = tables.load_eval_metrics(REPO / "metrics" / "eval")
    out = {}
    for name, m in list(committed.items())[:2]:
        m = io.read_json(REPO / "metrics" / "eval" / f"{name}.json")
        for bench in m["benchmarks"].values():
            bench["accuracy"].update(mean=0.0, ci_low=0.0, ci_high=0.0)
        for key, value in list(m.get("format_drift", {}).items()):
            if isinstance(value, (int, float)):
                m["format_drift"][key] = 0.0
        out[name] = m
    return out


def test_all_zero_bars_and_drift_shares_still_read():
    metrics = _zero_metrics()
    acc = figures.accuracy_frame(metrics)
    fig = figures.method_bars(acc, sorted(set(acc.method)), "zeros")
    assert figures.empty_panels(fig) == []
    drift = figures.drift_frame(metrics)
    assert not drift.empty and (drift.percent == 0).all()
    fig = figures.drift_plot(drift, "zeros")
    assert figures.empty_panels(fig) == []
    plt.close("all")


def test_zero_counterfactual_accuracy_still_reads():
    cell = {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 4}
    fig = figures.counterfactual_bars({"base": {"factual": cell, "counterfactual": cell}}, "zeros")
    assert figures.empty_panels(fig) == []
    plt.close(fig)


def test_the_committed_metrics_draw_no_blank_panel():
    metrics = tables.load_eval_metrics(REPO / "metrics" / "eval")
    acc = figures.accuracy_frame(metrics)
    drift = figures.drift_frame(metrics)
    drawn = [figures.method_bars(acc, ["base", "sft", "distilled_sft", "cft", "cgd"], "Fig. 2"),
             figures.drift_plot(drift, "Format drift")]
    curves = figures.training_curves(REPO / "metrics" / "05_train", ["cgd", "cft"])
    if not curves.empty:
        drawn.append(figures.loss_plot(curves, "Fig. 8"))
    diag = REPO / "metrics" / "08_diagnostics.json"
    if diag.exists():  # stage 08's Table 11, all zeros in the committed demo run
        drawn.append(figures.counterfactual_bars(io.read_json(diag)["table11_counterfactual"], "Table 11"))
    assert len(drawn) >= 4
    for fig in drawn:
        assert figures.empty_panels(fig) == [], fig.axes[0].get_title()
    plt.close("all")
