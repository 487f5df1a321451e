"""The release's cross-family table (README, Cross-Family Validation on Qwen2.5-Math-7B): the base
model; CFT on GPT-4o's critiques (WebInstruct-CFT, method cft_gpt4o) and on the profile's teacher's
(cft); CGD with the profile's teacher and with each teacher of ablations.teacher (the Claude row:
a teacher served by an OpenAI-compatible endpoint). Five benchmarks and their plain mean, beside the
release's numbers where the teacher is the one it names (the qwen25math7b-webinstruct profile)."""

from __future__ import annotations

from cgd.reporting import tables

ITEM = "Cross-family: Qwen2.5-Math-7B (revised paper)"
PAPER_MODEL = "Qwen2.5-Math-7B"
COLUMNS = ["math500", "minerva", "olympiadbench", "amc23", "aime24", "avg"]
# The teachers the release names, by the model id a profile gives them
TEACHERS = {"simplescaling/s1.1-32B": "S1.1-32B", "claude-3-7-sonnet-20250219": "Claude Sonnet 3.7"}


def _row(runs: list[dict], reported: dict, key: tuple[str, str]) -> dict[str, tables.Cell]:
    cells = {c: tables._cell(tables.run_value(runs, c), reported.get(key + (c,))) for c in COLUMNS[:-1]}
    values = [cells[c].run for c in COLUMNS[:-1]]
    # the release's Avg. is the plain mean of the five (its CFT (S1.1-32B) cell is not: paper_numbers.csv)
    avg = None if any(v is None for v in values) else round(sum(values) / len(values), 1)
    cells["avg"] = tables.Cell(avg, None, None, reported.get(key + ("avg",)))
    return cells


def table(metrics: dict[str, dict], by_teacher: dict[str, dict[str, dict]], teacher: str, paper_rows: list[dict],
          paper_model: str) -> tuple[list[str], dict]:
    """Rows base, cft_gpt4o, cft@<teacher>, cgd@<each teacher> ({teacher model: {run: eval metrics}},
    the profile's own first); the release's numbers where paper_model is the release's student."""
    reported = {(r["method"], r["setting"], r["benchmark"]): r["value"] for r in paper_rows
                if r["table"] == "cross_family" and r["model"] == paper_model}
    runs = tables.by_method(metrics)

    def setting(model: str) -> str:
        name = next((n for hub_id, n in TEACHERS.items() if tables.names_model(model, hub_id)), None)
        return f"teacher={name}" if name else f"teacher={model} (not in the release)"

    rows = {"base": _row(runs.get("base", []), reported, ("base", "")),
            "cft_gpt4o": _row(runs.get("cft_gpt4o", []), reported, ("cft_gpt4o", "")),
            f"cft@{teacher}": _row(runs.get("cft", []), reported, ("cft", setting(teacher)))}
    for model, by_run in by_teacher.items():
        cgd = [m for name, ms in tables.by_method(by_run).items() if name == "cgd" for m in ms]
        rows[f"cgd@{model}"] = _row(cgd, reported, ("cgd", setting(model)))
    return COLUMNS, rows
