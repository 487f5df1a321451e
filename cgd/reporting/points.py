"""Reading ablation points back: every point's metrics file (DVC's metrics/ablations/ or a papermill
sweep's folder), whether params.yaml still asks for it, and the curves its figures draw."""

from __future__ import annotations

import json
from pathlib import Path

from cgd.config import Params
from cgd.experiments.sweeps import ABLATIONS
from cgd.reporting import tables


def load_points(*folders: str | Path) -> list[dict]:
    """Every point metrics file (a JSON with values, chain and fingerprint) under the folders:
    metrics/ablations/ from DVC, or a papermill sweep's output folder."""
    points = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and {"values", "chain", "fingerprint", "eval"} <= set(data):
                points.append(data)
    return points


# Overrides every point of an ablation stage sets besides its own (dvc.yaml's general suites off;
# a flaw source's grid emptied inside its point, sweeps.resolve).
COMMON_OVERRIDES = ("eval.general.tasks", "ablations.flaw_source.sources")


def _own_overrides(point: dict) -> dict:
    """The overrides a point's ablation value brought in (a teacher's, a source's rollout.model)."""
    return {k: v for k, v in (point.get("overrides") or {}).items() if k not in COMMON_OVERRIDES}


def is_current(point: dict, cfg: Params) -> bool:
    """Whether a DVC ablation point belongs to the grid params.yaml asks for now: metrics of points
    since switched off stay in git, but no table or figure uses them."""
    a, v = cfg.ablations, point["values"]
    if point["ablation"] in ("flaw_source_data", "flaw_source"):
        # the source's model settings as params name them now (a changed spec is another source)
        given = _own_overrides(point)
        spec = a.flaw_source.sources.get(v.get("flaw_source"))
        if spec is None or given != {"rollout.model": spec}:
            return False
        if point["ablation"] == "flaw_source_data":
            return True
        return v.get("method") in a.flaw_source.methods and v.get("seed") in cfg.train.seeds
    if v.get("seed") not in cfg.train.seeds:
        return False
    if point["ablation"] == "lr":
        return v.get("method") in a.lr.methods and float(v.get("train.lr", -1)) in a.lr.values
    if point["ablation"] == "mixture":
        return (v.get("method") == a.mixture.method and v.get("refine.mixture_total") == a.mixture.total
                and v.get("refine.label_source") == a.mixture.label_source
                and float(v.get("refine.incorrect_fraction", -1)) in a.mixture.incorrect_fractions)
    if point["ablation"] == "teacher":
        # the teacher's own overrides, besides the general suites every point switches off (dvc.yaml)
        spec = a.teacher.teachers.get(v.get("teacher"))
        given = _own_overrides(point)
        return v.get("method") == a.teacher.method and spec is not None and given == spec
    if point["ablation"] == "epochs":
        return v.get("method") in a.epochs.methods and v.get("train.epochs") == a.epochs.epochs
    if point["ablation"] == "critique_content":
        return v.get("method") in a.critique_content.methods and v.get("critique_content") in a.critique_content.variants
    return False


def run_metrics(point: dict, label: str | None = None) -> tuple[str, dict]:
    """("<method>-seed<seed>", eval metrics) of a point's evaluation, as tables.by_method reads them."""
    ev = point["eval"][label] if label else next(iter(point["eval"].values()))
    return f"{point['values']['method']}-seed{point['values']['seed']}", ev


def graded_answers(ev: dict) -> list[dict] | None:
    """A point evaluation's graded samples, or None where its samples file is not in the workspace
    (a DVC output not pulled: the point's metrics are in git, its answers are not)."""
    from cgd.runtime.io import read_jsonl

    path = ev.get("samples")
    return list(read_jsonl(path)) if path and Path(path).exists() else None


def add_answers(answers: dict[str, dict[str, dict[int, list[dict]]]], kind: str, point: dict, ev: dict) -> None:
    """Files a point's graded samples under kind -> method -> seed for paired_with_main; a point
    whose samples are absent adds none, so its paired differences show as not run."""
    graded = graded_answers(ev)
    v = point["values"]
    if graded is not None:
        answers.setdefault(kind, {}).setdefault(v["method"], {})[v["seed"]] = graded


def paired_with_main(answers: dict[str, dict[str, dict[int, list[dict]]]], main_samples: dict[str, list[dict]],
                     cfg: Params) -> dict[str, dict[str, dict]]:
    """Each point kind's runs paired with the main runs on the same problems and seeds: `answers` maps
    a kind (a flaw source, a critique-content variant) -> method -> seed -> graded samples; returns
    kind -> method -> evaluation.compare_runs' pooled report ({} without a common seed)."""
    from cgd.evaluation import evaluate as evaluation

    paired: dict[str, dict[str, dict]] = {}
    for kind, by_method in answers.items():
        paired[kind] = {}
        for method, runs in by_method.items():
            own = {s: main_samples[f"{method}-seed{s}"] for s in runs if f"{method}-seed{s}" in main_samples}
            result = evaluation.compare_runs(runs, own, cfg.eval, cfg.seed)
            paired[kind][method] = result["pooled"] if result else {}
    return paired


def curve_frame(points: list[dict], ablation: str, extra: list[dict] | None = None):
    """Accuracy per (method, x, benchmark) for a curve over an ablation's axis, mean over seeds with
    a 95% interval (tables.run_value's rule). `extra` adds rows of main runs at the same settings:
    {"method", "x", "seed", "metrics"}. Mixture points also get an "avg" benchmark: the mean over
    the Group 1 (math) benchmarks they ran, as the paper's Fig. 5 plots."""
    import pandas as pd

    runs = [dict(e) for e in extra or []]
    for pt in (p for p in points if p["ablation"] == ablation):
        v = pt["values"]
        for ev in pt["eval"].values():
            # Epoch points have one evaluation per epoch; the mixture axis is drawn in percent.
            x = ev["epoch"] if ablation == "epochs" else float(v[ABLATIONS[ablation].axis])
            x = 100 * x if ablation == "mixture" else x
            runs.append({"method": v["method"], "x": x, "seed": v["seed"], "metrics": ev})
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["x"]), []).append(r["metrics"])
    rows = []
    for (method, x), metrics in sorted(groups.items()):
        names = sorted({b for m in metrics for b in m.get("benchmarks", {})})
        if ablation == "mixture":
            math = [b for b in names if all(m["benchmarks"].get(b, {}).get("group") == 1 for m in metrics)]
            metrics = [{**m, "benchmarks": {**m["benchmarks"], "avg": {"accuracy": {
                "mean": sum(m["benchmarks"][b]["accuracy"]["mean"] for b in math) / len(math)}}}}
                for m in metrics] if math else metrics
            names += ["avg"] if math else []
        for bench in names:
            mean, lo, hi = tables.run_value(metrics, bench)
            if mean is not None:
                rows.append({"method": method, "x": x, "benchmark": bench, "accuracy": mean,
                             "ci_low": mean if lo is None else lo, "ci_high": mean if hi is None else hi,
                             "seeds": len(metrics)})
    return pd.DataFrame(rows, columns=["method", "x", "benchmark", "accuracy", "ci_low", "ci_high", "seeds"])
