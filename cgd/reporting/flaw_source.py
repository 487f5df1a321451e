"""The flaw-source ablation in stage 07: who wrote y', and what it changes (beyond the paper).

The paper's Algorithm 1 has the student write the initial answers its teacher critiques; the review
of the revised version asks what happens when a weaker model writes them instead (the authors say
theirs came from a smaller model of the student's family). `ablations.flaw_source.sources` reruns
stages 02-04 with each source as `rollout.model` and trains the listed methods on the result
(dvc.yaml: flaw_source_data, ablate_flaw_source). The student's own point is the main run.

Here the points are gathered and paired with the main runs on the same problems: per benchmark and
paper group, source minus own, pooled over seeds (evaluation.compare_runs), beside each source's
share of incorrect y' and its critiques' accuracy (tables.flaw_source_stats).
"""

from __future__ import annotations

from pathlib import Path

from cgd.config import Params
from cgd.reporting import tables
from cgd.reporting.points import add_answers, paired_with_main, run_metrics
from cgd.runtime import io

ITEM = "Flaw sources (beyond the paper)"  # its INDEX.md entry
REPORTS = ("02_rollout", "03_critique", "04_refine")


def gather(points: list[dict], metrics: dict[str, dict], samples_dir: str | Path, reports_dir: str | Path,
           cfg: Params) -> tuple[list[str], dict, list[str]] | None:
    """(columns, rows, sources) of the flaw-source table from the current points, the main runs'
    eval metrics and graded answers (samples_dir) and their stage 02-04 reports (reports_dir); None
    when no source has a trained point."""
    trained = [p for p in points if p["ablation"] == "flaw_source"]
    if not trained:
        return None
    generated = {p["values"]["flaw_source"]: p for p in points if p["ablation"] == "flaw_source_data"}
    own_samples = tables.load_eval_samples(samples_dir)
    by_source: dict[str, dict[str, dict]] = {}
    answers: dict[str, dict[str, dict[int, list[dict]]]] = {}  # source -> method -> seed -> samples
    for p in sorted(trained, key=lambda p: (p["values"]["flaw_source"], p["values"]["method"], p["values"]["seed"])):
        v = p["values"]
        name, ev = run_metrics(p)
        by_source.setdefault(v["flaw_source"], {})[name] = ev
        add_answers(answers, v["flaw_source"], p, ev)
    paired = paired_with_main(answers, own_samples, cfg)
    data = {tables.OWN: tables.flaw_source_stats(*(io.read_json(Path(reports_dir) / f"{r}.json") for r in REPORTS))}
    for source, p in generated.items():
        if all(r in p.get("data", {}) for r in REPORTS):
            data[source] = tables.flaw_source_stats(*(p["data"][r] for r in REPORTS))
    own_runs = {n: m for n, m in metrics.items() if n != "base"}
    columns, rows = tables.flaw_source_table(cfg.ablations.flaw_source.methods, own_runs, by_source, data, paired,
                                             list(cfg.eval.benchmarks))
    return columns, rows, list(by_source)
