"""The critique-content ablation in stage 07 (the revised paper; the release README's table).

CGD retrained on the same rows with the critique replaced: B, another row's critique (specific but
irrelevant); C, one generic text (cgd/distill/critique_content.py, the ablation's data step). A is the
main run. Each variant's runs are paired with A's on the same problems and seeds (evaluation.compare_runs:
bootstrap CI and McNemar p, pooled over seeds); every run row is the mean ± sd over seeds, as the
release reports it, beside the release's numbers (a reference unless the student is the release's).
"""

from __future__ import annotations

from cgd.config import Params
from cgd.distill import critique_content as content
from cgd.reporting import tables
from cgd.reporting.points import add_answers, paired_with_main, run_metrics

ITEM = "Critique content (revised paper)"  # its INDEX.md entry
PAPER_TABLE = "critique_content"  # data/paper/paper_numbers.csv rows (method cgd, setting <condition>:mean|sd)
PAPER_BENCHMARKS = ["math500", "amc23", "aime24"]
CONDITIONS = ("relevant", *content.VARIANTS)


def row_name(method: str, condition: str) -> str:
    return f"{method}@content={condition}"


def delta_name(method: str, variant: str) -> str:
    return f"delta_{method}@content={variant}"


def paper_values(reported: list[dict]) -> dict[tuple[str, str], tuple[float, float | None]]:
    """(condition, benchmark) -> (mean, sd) from the release's table."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in reported:
        if r["table"] == PAPER_TABLE:
            condition, _, stat = r["setting"].partition(":")
            cells.setdefault((condition, r["benchmark"]), {})[stat] = r["value"]
    return {k: (v["mean"], v.get("sd")) for k, v in cells.items() if "mean" in v}


def table(methods: list[str], main: dict[str, dict], by_variant: dict[str, dict[str, dict]],
          paired: dict[str, dict[str, dict]], benchmarks: list[str], reported: list[dict],
          comparable: bool) -> tuple[list[str], dict]:
    """Rows per method: A (the main runs, `main`: run name -> eval metrics), each variant of
    `by_variant` (variant -> run name -> eval metrics) and its paired difference to A (`paired`:
    variant -> method -> compare_runs' pooled report). Columns: the release's three benchmarks that
    were evaluated, then the rest of `benchmarks`. `comparable`: the run's student is the release's."""
    columns = [b for b in PAPER_BENCHMARKS if b in benchmarks] + [b for b in benchmarks if b not in PAPER_BENCHMARKS]
    ref = paper_values(reported)

    def cells(runs: list[dict], condition: str) -> dict[str, tables.Cell]:
        out = {}
        for c in columns:
            mean, lo, hi, sd = tables.mean_sd([(m.get("benchmarks", {}).get(c) or {}).get("accuracy") for m in runs])
            paper_mean, paper_sd = ref.get((condition, c), (None, None))
            out[c] = tables.Cell(None if mean is None else round(mean, 1), None if lo is None else round(lo, 1),
                                 None if hi is None else round(hi, 1), paper_mean,
                                 sd=None if sd is None else round(sd, 1), paper_sd=paper_sd, comparable=comparable)
        return out

    rows: dict[str, dict[str, tables.Cell]] = {}
    for method in methods:
        rows[row_name(method, "relevant")] = cells(tables.by_method(main).get(method, []), "relevant")
        for variant, metrics in by_variant.items():
            rows[row_name(method, variant)] = cells(tables.by_method(metrics).get(method, []), variant)
        for variant in by_variant:
            delta = {}
            for c in columns:
                pair = (paired.get(variant) or {}).get(method, {}).get(c)
                variant_mean, relevant_mean = ref.get((variant, c), (None,))[0], ref.get(("relevant", c), (None,))[0]
                paper_delta = None if variant_mean is None or relevant_mean is None \
                    else round(variant_mean - relevant_mean, 1)
                if not pair or pair.get("diff") is None:
                    delta[c] = tables.Cell(None, None, None, paper_delta, comparable=comparable)
                    continue
                lo, hi = pair["ci_low"], pair["ci_high"]
                delta[c] = tables.Cell(round(pair["diff"], 1), None if lo is None else round(lo, 1),
                                       None if hi is None else round(hi, 1), paper_delta, pair.get("p_value"),
                                       comparable=comparable)
            rows[delta_name(method, variant)] = delta
    return columns, rows


def gather(points: list[dict], metrics: dict[str, dict], samples_dir: str, cfg: Params, reported: list[dict],
           comparable: bool) -> tuple[list[str], dict, list[str], dict] | None:
    """(columns, rows, variants, data reports) of the table from the current points, the main runs'
    metrics and graded answers (samples_dir); None when no variant has a trained point."""
    trained = [p for p in points if p["ablation"] == "critique_content"]
    if not trained:
        return None
    own_samples = tables.load_eval_samples(samples_dir)
    by_variant: dict[str, dict[str, dict]] = {}
    answers: dict[str, dict[str, dict[int, list[dict]]]] = {}  # variant -> method -> seed -> samples
    data: dict[str, dict] = {}  # variant -> its data step's report (the same rows for every seed)
    order = {v: i for i, v in enumerate(content.VARIANTS)}
    for p in sorted(trained, key=lambda p: (order.get(p["values"]["critique_content"], 99), p["values"]["method"],
                                            p["values"]["seed"])):
        v = p["values"]
        name, ev = run_metrics(p)
        by_variant.setdefault(v["critique_content"], {})[name] = ev
        add_answers(answers, v["critique_content"], p, ev)
        data.setdefault(v["critique_content"], {k: x for k, x in (p.get("critique_content") or {}).items()
                                                if k != "provenance"})
    paired = paired_with_main(answers, own_samples, cfg)
    main = {n: m for n, m in metrics.items() if n != "base"}
    columns, rows = table(cfg.ablations.critique_content.methods, main, by_variant, paired, list(cfg.eval.benchmarks),
                          reported, comparable)
    return columns, rows, list(by_variant), data


def caption(variants: list[str], data: dict[str, dict]) -> str:
    """What each variant's rows were: the derangement's seed and counts, the generic text's version."""
    parts = ["A: the main run's own critiques"]
    for v in variants:
        d = data.get(v) or {}
        if v == "irrelevant":
            parts.append(f"B: another row's critique (a derangement, seed {d.get('seed')}; {d.get('replaced')} rows, "
                         f"{d.get('same_text_as_own')} reading the same as their own, {d.get('conclusion_differs')} "
                         "concluding otherwise)")
        else:
            parts.append(f"C: one generic critique, {d.get('generic_version')} ({d.get('generic_source')}; "
                         f"{d.get('replaced')} rows)")
    return "; ".join(parts) + ". Release: README, Critique Content Ablation (mean ± sd)."
