"""pass@k and reasoning length per model and benchmark (the release README's AIME24 table).

The release reports, for the base model and CGD on AIME24: pass@1 (greedy), pass@8 and pass@16 with
a spread, the average reasoning length in words and the average number of reasoning steps. Here every
evaluated model (base and each method, the mean over its seeds: ± sd for several seeds, the bootstrap
CI for one) on every benchmark of `eval.pass_at_k.benchmarks`, or on every evaluated benchmark when
that list is empty (then the sampled columns read "not run"). Words and steps count each greedy
response as cgd/evaluation/reasoning.py defines them.
"""

from __future__ import annotations

from cgd.config import Params
from cgd.reporting import tables

PAPER_TABLE = "reasoning"  # data/paper/paper_numbers.csv: method base|cgd, benchmark aime24, setting the column
ITEM = "pass@k and reasoning length (revised paper)"  # its INDEX.md entry


def row_name(method: str, bench: str) -> str:
    return f"{method}@bench={bench}"


def columns_for(cfg: Params) -> tuple[list[str], list[str]]:
    """(benchmarks, columns): pass@1 greedy, each sampled pass@k, words, steps."""
    benches = list(cfg.eval.pass_at_k.benchmarks) or list(cfg.eval.benchmarks)
    ks = [f"pass@{k}" for k in cfg.eval.pass_at_k.k] if cfg.eval.pass_at_k.benchmarks else []
    return benches, ["greedy", *ks, "words", "steps"]


def _stat(m: dict, bench: str, column: str) -> dict | None:
    entry = (m.get("benchmarks") or {}).get(bench) or {}
    if column == "greedy":
        return entry.get("accuracy")
    if column in ("words", "steps"):
        return (entry.get("reasoning") or {}).get(column)
    return (entry.get("pass_at_k") or {}).get(column)


def paper_values(reported: list[dict]) -> dict[tuple[str, str, str], tuple[float, float | None]]:
    """(method, benchmark, column) -> (mean, sd) from the release's table."""
    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in reported:
        if r["table"] == PAPER_TABLE:
            column, _, stat = r["setting"].partition(":")
            cells.setdefault((r["method"], r["benchmark"], column), {})[stat or "mean"] = r["value"]
    return {k: (v["mean"], v.get("sd")) for k, v in cells.items()}


def table(metrics: dict[str, dict], cfg: Params, reported: list[dict], comparable: bool) -> tuple[list[str], dict]:
    """Rows "<method>@bench=<benchmark>" for every method with runs, columns from `columns_for`."""
    benches, columns = columns_for(cfg)
    ref = paper_values(reported)
    by_method = tables.by_method(metrics)
    rows: dict[str, dict[str, tables.Cell]] = {}
    for bench in benches:
        for method, runs in by_method.items():
            cells = {}
            for c in columns:
                mean, lo, hi, sd = tables.mean_sd([_stat(m, bench, c) for m in runs])
                paper_mean, paper_sd = ref.get((method, bench, c), (None, None))
                digits = 0 if c == "words" else 1
                cells[c] = tables.Cell(None if mean is None else round(mean, digits),
                                       None if lo is None else round(lo, digits), None if hi is None else round(hi, digits),
                                       paper_mean, sd=None if sd is None else round(sd, digits), paper_sd=paper_sd,
                                       comparable=comparable, digits=digits)
            rows[row_name(method, bench)] = cells
    return columns, rows
