"""Appendix C's tables from stage 08's probes: first-token entropy (Table 9), gradient norm with and
without the critique (Table 10), factual vs counterfactual critiques (Table 11)."""

from __future__ import annotations

from cgd.config import methods as registry
from cgd.reporting.tables import Cell

# Table 9's "Baseline SFT" row is the paper's starting model, our base student.
PAPER_TABLE9_METHOD = {"base": "baseline_sft"}


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def table9(diag: dict, paper_rows: list[dict], paper_model: str) -> tuple[list[str], dict]:
    """Mean first-token entropy per model (nats), and each model minus CGD on the same rows (bootstrap
    CI, paired t-test p)."""
    reported = {r["method"]: r["value"] for r in paper_rows if r["table"] == "table9" and r["model"] == paper_model}
    rows = {}
    probed = diag["table9_entropy"]
    for name in registry.ordered(probed):
        e = probed[name]
        vs = e.get("vs_cgd") or {}
        rows[name] = {
            "mean_entropy": Cell(_r(e["mean"], 2), None, None, reported.get(PAPER_TABLE9_METHOD.get(name, name)), digits=2),
            "sd": Cell(_r(e["sd"], 2), None, None, None, digits=2),
            "minus_cgd": Cell(_r(vs.get("diff"), 3), _r(vs.get("ci_low"), 3), _r(vs.get("ci_high"), 3), None,
                              vs.get("p_value"), digits=3, applies=name != "cgd"),
        }
    return ["mean_entropy", "sd", "minus_cgd"], rows


def table10(diag: dict, paper_rows: list[dict], paper_model: str) -> tuple[list[str], dict]:
    """The CGD model's gradient norm with and without the critique (mean, sd), and their paired difference."""
    reported = {(r["setting"], r["benchmark"]): r["value"] for r in paper_rows
                if r["table"] == "table10" and r["model"] == paper_model}
    t = diag["table10_gradient_norm"]
    rows = {}
    for cond in ("without_critique", "with_critique"):
        setting = "condition=" + cond.replace("_", " ")
        rows[cond] = {"grad_norm_mean": Cell(_r(t[cond]["mean"], 1), None, None,
                                             reported.get((setting, "grad_norm_mean"))),
                      "grad_norm_std": Cell(_r(t[cond]["sd"], 1), None, None, reported.get((setting, "grad_norm_std")))}
    d = t["with_minus_without"]
    rows["with_minus_without"] = {
        "grad_norm_mean": Cell(_r(d["diff"], 1), _r(d["ci_low"], 1), _r(d["ci_high"], 1), None, d["p_value"]),
        "grad_norm_std": Cell(None, None, None, None, applies=False)}
    return ["grad_norm_mean", "grad_norm_std"], rows


def table11(diag: dict) -> tuple[list[str], dict]:
    """Accuracy (%) answering with factual and counterfactual critiques, and their paired difference
    (bootstrap CI, McNemar p). The paper reports one sample (base: correct / incorrect; CGD: correct
    / correct), noted under the table, not as numbers."""
    rows = {}
    for name, cells in diag["table11_counterfactual"].items():
        d = cells["factual_minus_counterfactual"]
        rows[name] = {cond: Cell(_r(cells[cond]["mean"], 1), _r(cells[cond]["ci_low"], 1),
                                 _r(cells[cond]["ci_high"], 1), None) for cond in ("factual", "counterfactual")}
        rows[name]["factual_minus_counterfactual"] = Cell(_r(d["diff"], 1), _r(d["ci_low"], 1),
                                                          _r(d["ci_high"], 1), None, d["p_value"])
    return ["factual", "counterfactual", "factual_minus_counterfactual"], rows
