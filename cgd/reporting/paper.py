"""The numbers the paper reports (data/paper/paper_numbers.csv), for side-by-side tables.

One row per (table, model, method, setting, benchmark, value), transcribed from the paper's Tables
1-4 and 6-10. Where the paper's own Avg. or Δ cell disagrees with its row (a plain mean over the
group's benchmarks, or CGD − CFT), the row says so in `note` ("paper_inconsistent: ..."); the
value is kept as printed. `inconsistencies()` recomputes those checks, and a test keeps the two
in step.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "data" / "paper" / "paper_numbers.csv"
GROUP1 = ["math500", "minerva", "gsm8k", "olympiadbench", "amc23"]
GROUP2 = ["theoremqa", "gpqa", "mmlu_pro"]
# Values are printed to one decimal, so a mean of rounded cells may be off by ~0.05 each way.
TOLERANCE = 0.1


def load(path: str | Path = PATH) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{**r, "value": float(r["value"])} for r in csv.DictReader(fh)]


def _rows_by_setting(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    out: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        out[(r["table"], r["model"], r["method"], r["setting"])][r["benchmark"]] = r["value"]
    return out


def inconsistencies(rows: list[dict]) -> dict[tuple, str]:
    """(table, model, method, setting, benchmark) -> what disagrees, for every Avg. cell that is not
    the plain mean of its group and every Δ cell that is not CGD − CFT."""
    by = _rows_by_setting(rows)
    out = {}
    for key, cells in by.items():
        if key[2] == "delta_cgd_minus_cft":
            cgd, cft = by[key[:2] + ("cgd", key[3])], by[key[:2] + ("cft", key[3])]
            for bench, delta in cells.items():
                expected = cgd[bench] - cft[bench]
                if abs(expected - delta) > TOLERANCE + 1e-9:
                    out[key + (bench,)] = f"reported {delta}, CGD - CFT = {expected:.1f}"
            continue
        for avg, members in (("avg_group1", GROUP1), ("avg_group2", GROUP2),
                             ("avg", [b for b in cells if b != "avg"])):
            if avg in cells and all(m in cells for m in members):
                mean = sum(cells[m] for m in members) / len(members)
                if abs(mean - cells[avg]) > TOLERANCE + 1e-9:
                    out[key + (avg,)] = f"reported {cells[avg]}, plain mean of the row = {mean:.2f}"
    return out
