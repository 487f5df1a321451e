"""The grader table: every evaluated run's greedy samples under both rules (cgd.grading.judge), per
benchmark, and the samples on which the rules disagree.

Counted from data/06_eval/<run>/samples.jsonl alone, where stage 06 records both verdicts on every
sample, so the table is a recount a reader can repeat.
"""

from __future__ import annotations

from cgd.evaluation.evaluate import grader_counts
from cgd.grading.judge import GRADERS

ITEM = "Graders"  # its INDEX.md entry
ALL_RUNS = "all runs"
TAIL_CHARS = 300  # the end of each disagreeing output shown in the listing


def _graded(samples: list[dict]) -> list[dict]:
    return [r for r in samples if r.get("mode", "greedy") == "greedy" and "verdicts" in r]


def _row(run: str, bench: str, rows: list[dict]) -> dict:
    counts = grader_counts(rows)  # stage 06's own count of each rule's verdicts
    out = {"run": run, "benchmark": bench, "samples": len(rows)}
    for g in GRADERS:
        out[f"{g}_correct"] = counts[g]["correct"]
        out[f"{g}_accuracy"] = counts[g]["accuracy"]
    a, b = GRADERS
    out["disagreements"] = counts["disagreements"]
    out[f"only_{a}"] = sum(r["verdicts"][a]["correct"] and not r["verdicts"][b]["correct"] for r in rows)
    out[f"only_{b}"] = sum(r["verdicts"][b]["correct"] and not r["verdicts"][a]["correct"] for r in rows)
    out[f"{a}_no_final_answer"] = counts[a]["reasons"].get("no_final_answer", 0)
    return out


def grader_table(samples: dict[str, list[dict]]):
    """One row per run and benchmark, then one per benchmark over all runs: samples, correct and
    accuracy (%) under each rule, disagreements (and which rule credited the sample), and how many
    outputs our rule found no final answer in."""
    import pandas as pd

    rows, pooled = [], {}
    for run, run_samples in sorted(samples.items()):
        by_bench: dict[str, list[dict]] = {}
        for r in _graded(run_samples):
            by_bench.setdefault(r["benchmark"], []).append(r)
        for bench, bench_rows in sorted(by_bench.items()):
            rows.append(_row(run, bench, bench_rows))
            pooled.setdefault(bench, []).extend(bench_rows)
    rows += [_row(ALL_RUNS, bench, bench_rows) for bench, bench_rows in sorted(pooled.items())]
    return pd.DataFrame(rows)


def disagreements(samples: dict[str, list[dict]]):
    """Every greedy sample the two rules judge differently: what each extracted and why, and the
    output's end."""
    import pandas as pd

    out = []
    for run, run_samples in sorted(samples.items()):
        for r in _graded(run_samples):
            v = r["verdicts"]
            if len({v[g]["correct"] for g in GRADERS}) < 2:
                continue
            row = {"run": run, "benchmark": r["benchmark"], "problem_id": r["problem_id"], "gold": r["gold"]}
            for g in GRADERS:
                row |= {f"{g}_correct": v[g]["correct"], f"{g}_extracted": v[g]["extracted"],
                        f"{g}_reason": v[g]["reason"]}
            row["output_end"] = (r["output"] or "")[-TAIL_CHARS:]
            out.append(row)
    columns = ["run", "benchmark", "problem_id", "gold"] + [f"{g}_{k}" for g in GRADERS
                                                           for k in ("correct", "extracted", "reason")]
    return pd.DataFrame(out, columns=columns + ["output_end"])


def rule_of(metrics: list[dict]) -> str | None:
    """The rule the given stage-06 metrics report accuracy under: one name, "mixed (a, b)" when runs
    differ, None without benchmark results; "unrecorded" for metrics written before both were kept."""
    names = {entry.get("grader", "unrecorded") for m in metrics for entry in (m.get("benchmarks") or {}).values()}
    if not names:
        return None
    return names.pop() if len(names) == 1 else f"mixed ({', '.join(sorted(names))})"
