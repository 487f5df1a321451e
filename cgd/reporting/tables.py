"""Paper tables rebuilt from stage-06 metrics, each cell beside the number the paper reports.

A run's cell is the mean over its seeds. The interval is the run's bootstrap 95% CI for a single
seed, or a t-interval over seeds when there are several (Appendix A reports means over three
seeds). A benchmark or method without metrics reads "not run": nothing is filled in from the paper.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from cgd.config import methods as registry
from cgd.data import benchmarks
from cgd.reporting import paper
from cgd.runtime.io import read_json

NOT_RUN = "not run"
# Rows that are not methods; a method's title comes from the registry (cgd/config/methods.py).
ROW_TITLES = {"delta_cgd_minus_cft": "Δ = CGD − CFT",
              "simplerl_zero": "SimpleRL-Zero (the paper's copy of its official numbers)"}


def _title(key: str) -> str:
    return registry.title(key) or ROW_TITLES.get(key, key)

# The student each of the paper's model rows was trained from. A run's cell prints its difference to
# the paper only where the run's student is that model; beside any other student the paper's number
# is a reference ("ref."), never a difference (the 135M demo beside LLaMA's 50.6 is not "-47").
PAPER_STUDENTS = {"LLaMA3.1-8B Instruct": "meta-llama/Llama-3.1-8B-Instruct", "S1.1-3B": "simplescaling/s1.1-3B",
                  "Mixtral-8x7B Instruct": "mistralai/Mixtral-8x7B-Instruct-v0.1",
                  "OLMo-2-1124-7B-Instruct": "allenai/OLMo-2-1124-7B-Instruct", "LLaMA3.1-8B": "meta-llama/Llama-3.1-8B",
                  "Qwen2.5-Math-7B": "Qwen/Qwen2.5-Math-7B"}


def names_model(model: str, hub_id: str) -> bool:
    """Whether `model` is the hub model `hub_id`: its id, or a local copy named alike."""
    model = model.rstrip("/")
    return model == hub_id or Path(model).name == hub_id.split("/")[-1]


def compares_with_paper(student_model: str, paper_model: str) -> bool:
    """Whether the run's student is the paper row's model (names_model)."""
    return names_model(student_model, PAPER_STUDENTS[paper_model])


def as_reference(rows: dict[str, dict[str, "Cell"]]) -> dict[str, dict[str, "Cell"]]:
    """The same cells with the paper's numbers as references only (no difference printed)."""

    return {method: {col: replace(cell, comparable=False) for col, cell in cells.items()}
            for method, cells in rows.items()}


@dataclass(frozen=True)
class Cell:
    run: float | None  # this run, percent
    ci_low: float | None
    ci_high: float | None
    paper: float | None
    p_value: float | None = None  # paired cells (Δ rows): exact McNemar p on the same problems
    digits: int = 1  # decimals shown (entropies need two)
    applies: bool = True  # False: the cell has no meaning for its row (CGD minus itself) and reads "—"
    comparable: bool = True  # False: another student or method than the paper's; no difference
    paper_only: bool = False  # a row the paper reports and this pipeline never runs (SimpleRL-Zero)
    beyond_paper: bool = False  # a table the paper has no numbers for: the run's value alone
    grader: str | None = None  # the rule that judged the answers behind the run's value (cgd.grading.judge)
    sd: float | None = None  # the standard deviation over seeds, shown as "mean ± sd" in place of the interval
    paper_sd: float | None = None  # the paper's (or release's) own ± beside its mean

    @property
    def diff(self) -> float | None:
        if self.run is None or self.paper is None or not self.comparable:
            return None
        return round(self.run - self.paper, self.digits)

    def text(self) -> str:
        if not self.applies:
            return "—"
        d = self.digits
        if self.paper_only:
            return "–" if self.paper is None else f"paper: {self.paper:.{d}f}"
        run = NOT_RUN if self.run is None else f"{self.run:.{d}f}"
        if self.run is not None and self.sd is not None:
            run += f" ± {self.sd:.{d}f}"
        if self.run is not None and self.ci_low is not None:
            run += f" [{self.ci_low:.{d}f}, {self.ci_high:.{d}f}]"
        if self.run is not None and self.p_value is not None:
            run += f" p={self.p_value:.2g}"
        if self.run is not None and self.grader:
            run += f" ⟨{self.grader}⟩"
        if self.beyond_paper:
            return run
        paper_ = "–" if self.paper is None else f"{'' if self.comparable else 'ref. '}{self.paper:.{d}f}"
        if self.paper is not None and self.paper_sd is not None:
            paper_ += f" ± {self.paper_sd:.{d}f}"
        diff = "" if self.diff is None else f" ({self.diff:+.{d}f})"
        return f"{run} / {paper_}{diff}"


def with_grader(rows: dict[str, dict[str, Cell]], grader: str | None) -> dict[str, dict[str, Cell]]:
    """The cells holding a value from graded answers, tagged with the rule that graded them."""
    return {name: {c: replace(cell, grader=grader) if cell.run is not None else cell for c, cell in cells.items()}
            for name, cells in rows.items()}


def load_eval_samples(folder: str | Path = "data/06_eval") -> dict[str, list[dict]]:
    """run name -> its graded samples (data/06_eval/<run>/samples.jsonl), for paired comparisons."""
    from cgd.runtime.io import read_jsonl

    return {p.parent.name: list(read_jsonl(p)) for p in sorted(Path(folder).glob("*/samples.jsonl"))}


def load_eval_metrics(folder: str | Path = "metrics/eval") -> dict[str, dict]:
    """model name ("base", "<method>-seed<seed>") -> its metrics/eval JSON."""
    return {p.stem: read_json(p) for p in sorted(Path(folder).glob("*.json"))}


def by_method(metrics: dict[str, dict]) -> dict[str, list[dict]]:
    """Group runs by method; the base model is its own method."""
    out: dict[str, list[dict]] = {}
    for name, m in metrics.items():
        method = "base" if name == "base" else re.fullmatch(r"(\w+)-seed\d+", name).group(1)
        out.setdefault(method, []).append(m)
    return out


def _over_seeds(values: list[tuple[float, float | None, float | None]]) -> tuple:
    from scipy import stats as st

    means = [v[0] for v in values]
    mean = sum(means) / len(means)
    if len(values) == 1:
        return means[0], values[0][1], values[0][2]
    sem = st.sem(means)
    if sem == 0:
        return mean, mean, mean
    lo, hi = st.t.interval(0.95, len(means) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def mean_sd(values: list[dict | None]) -> tuple[float | None, float | None, float | None, float | None]:
    """(mean, ci_low, ci_high, sd) over runs of one statistic ({"mean", "ci_low", "ci_high"} each):
    one run keeps its bootstrap CI; several give the sample sd over seeds (the release's ±), no CI."""
    if not values or any(not v or v.get("mean") is None for v in values):
        return None, None, None, None
    if len(values) == 1:
        return values[0]["mean"], values[0].get("ci_low"), values[0].get("ci_high"), None
    means = [v["mean"] for v in values]
    return statistics.fmean(means), None, None, statistics.stdev(means)


def run_value(runs: list[dict], bench: str) -> tuple[float | None, float | None, float | None]:
    """(mean, ci_low, ci_high) of a benchmark's accuracy, or of a group's plain mean ("avg_group1/2",
    the paper's Avg. columns; no interval)."""
    values = []
    for m in runs:
        if bench.startswith("avg_group"):
            # The paper's Avg. is over the whole group: a run that skipped a member has no Avg.
            members = paper.GROUP1 if bench == "avg_group1" else paper.GROUP2
            accs = [m.get("benchmarks", {}).get(b, {}).get("accuracy", {}).get("mean") for b in members]
            if any(a is None for a in accs):
                return None, None, None
            values.append((sum(accs) / len(accs), None, None))
        else:
            acc = m.get("benchmarks", {}).get(bench, {}).get("accuracy")
            if not acc or acc.get("mean") is None:
                return None, None, None
            values.append((acc["mean"], acc.get("ci_low"), acc.get("ci_high")))
    return _over_seeds(values) if values else (None, None, None)


def _cell(value: tuple[float | None, float | None, float | None], paper_value: float | None) -> Cell:
    """A (mean, ci_low, ci_high) triple rounded to the paper's one decimal, beside the paper's value."""
    mean, lo, hi = (None if v is None else round(v, 1) for v in value)
    return Cell(mean, lo, hi, paper_value)


GENERAL = ["ifeval", "musr", "truthfulqa", "bbh", "humaneval"]  # Table 2 columns (HumanEval: the release's); lm-eval task names contain them


def general_value(runs: list[dict], column: str) -> tuple[float | None, float | None, float | None]:
    """Table 2 cell: the lm-eval task whose name contains `column`, mean over seeds; a single run's
    interval is its value +- 1.96 standard errors."""
    values = []
    for m in runs:
        hits = [v for task, v in (m.get("general") or {}).items() if column in task and isinstance(v, dict)]
        if not hits:
            return None, None, None
        v = hits[0]
        se = v.get("stderr")
        values.append((v["value"], None if se is None else v["value"] - 1.96 * se,
                       None if se is None else v["value"] + 1.96 * se))
    return _over_seeds(values) if values else (None, None, None)


def table2(metrics: dict[str, dict], paper_rows: list[dict], paper_model: str) -> tuple[list[str], dict]:
    """Paper Table 2: IFEval, MUSR, TruthfulQA, BBH per method (lm-evaluation-harness)."""
    reported = {(r["method"], r["benchmark"]): r["value"] for r in paper_rows
                if r["table"] == "table2" and r["model"] == paper_model}
    runs = by_method(metrics)
    rows = {}
    # The paper's Table 2 CFT row is CFT* (GPT-4o critiques); ours is its own row, with no paper number.
    for method in registry.ordered(["base", "sft", "distilled_sft", "cft", "cft_gpt4o", "cgd"]):
        rows[method] = {}
        for col in GENERAL:
            value = general_value(runs[method], col) if method in runs else (None, None, None)
            rows[method][col] = _cell(value, reported.get((method, col)))
    return GENERAL, rows


def table4(runs_by_lr: dict[float, dict[str, dict]], paper_rows: list[dict]) -> tuple[list[str], dict]:
    """Paper Table 4: CGD and CFT at each learning rate (rows "cft@1e-06"), over MATH500 ...
    TheoremQA and their plain mean. `runs_by_lr` maps a learning rate to the eval metrics of the
    runs trained with it; the paper's two rates are always listed, "not run" until a sweep fills them."""
    columns = ["math500", "minerva", "gsm8k", "olympiadbench", "amc23", "theoremqa", "avg"]
    reported = {(r["method"], float(r["setting"].removeprefix("lr=")), r["benchmark"]): r["value"]
                for r in paper_rows if r["table"] == "table4"}
    rates = sorted({lr for _, lr, _ in reported} | set(runs_by_lr))
    rows = {}
    for method in ("cft", "cgd"):
        for lr in rates:
            runs = by_method(runs_by_lr.get(lr, {})).get(method, [])
            cells = {c: _cell(run_value(runs, c), reported.get((method, lr, c))) for c in columns[:-1]}
            vals = [cells[c].run for c in columns[:-1]]
            avg = None if any(v is None for v in vals) else round(sum(vals) / len(vals), 1)
            cells["avg"] = Cell(avg, None, None, reported.get((method, lr, "avg")))
            rows[f"{method}@{lr:g}"] = cells
    return columns, rows


def table1(metrics: dict[str, dict], paper_rows: list[dict], paper_model: str,
           paper_table: str = "table1", paired: dict | None = None) -> tuple[list[str], dict]:
    """Paper Table 1 layout: Group 1, its Avg., Group 2, its Avg.; rows base, methods, Δ = CGD − CFT.
    Tables 6 (MetaMathQA) and 7 (Mixtral, OLMo students) share it: `paper_table` picks the paper
    rows to set beside the run. `paired` (evaluation.compare_methods' pooled CGD − CFT) gives the
    Δ cells their paired bootstrap CI and McNemar p. Returns the column keys and {method: {column: Cell}}."""
    group1 = [b for b in paper.GROUP1]
    group2 = [b for b in paper.GROUP2]
    columns = group1 + ["avg_group1"] + group2 + ["avg_group2"]
    reported = {(r["method"], r["benchmark"]): r["value"] for r in paper_rows
                if r["table"] == paper_table and r["model"] == paper_model and r["setting"] == ""}
    runs = by_method(metrics)
    rows: dict[str, dict[str, Cell]] = {}
    shown = ["base", "sft", "distilled_sft", "cft", "cgd"]
    if "cft_gpt4o" in runs or any(m == "cft_gpt4o" for m, _ in reported):  # CFT*: its own labelled row
        shown.append("cft_gpt4o")
    for method in registry.ordered(shown):
        rows[method] = {col: _cell(run_value(runs.get(method, []), col), reported.get((method, col)))
                        for col in columns}
    rows["delta_cgd_minus_cft"] = {}
    for col in columns:
        cgd, cft = rows["cgd"][col].run, rows["cft"][col].run
        reported_delta = reported.get(("delta_cgd_minus_cft", col))
        if cgd is None or cft is None:
            rows["delta_cgd_minus_cft"][col] = Cell(None, None, None, reported_delta)
            continue
        pair = (paired or {}).get(col)
        if pair and pair.get("diff") is not None:
            lo, hi = pair["ci_low"], pair["ci_high"]
            rows["delta_cgd_minus_cft"][col] = Cell(
                round(pair["diff"], 1), None if lo is None else round(lo, 1),
                None if hi is None else round(hi, 1), reported_delta, pair.get("p_value"))
        else:
            rows["delta_cgd_minus_cft"][col] = Cell(round(cgd - cft, 1), None, None, reported_delta)
    return columns, rows


TABLE5 = {"batch_size": "global_batch_size", "learning_rate": "lr", "max_length": "max_length",
          "epochs": "epochs", "warmup_ratio": "warmup_ratio"}


def table5(train: dict, paper_rows: list[dict]):
    """Paper Table 5 (hyperparameters) beside this run's train.* values, which the paper profiles
    set to the paper's (a test checks them); the CPU demo's differ and say so."""
    import pandas as pd

    reported = {r["benchmark"]: r["value"] for r in paper_rows if r["table"] == "table5"}
    shown = lambda v: None if v is None else f"{float(v):g}"  # 64, 1e-06, 8192 as the paper prints them
    rows = [{"hyperparameter": name, "param": f"train.{key}", "this run": shown(train[key]),
             "paper": shown(reported.get(name)),
             "same": reported.get(name) is not None and float(train[key]) == float(reported[name])}
            for name, key in TABLE5.items()]
    rows += [{"hyperparameter": "optimizer", "param": "train.optimizer", "this run": train["optimizer"],
              "paper": "AdamW", "same": train["optimizer"].startswith("adamw")},
             {"hyperparameter": "scheduler", "param": "train.lr_scheduler", "this run": train["lr_scheduler"],
              "paper": "cosine", "same": train["lr_scheduler"] == "cosine"}]
    return pd.DataFrame(rows)


TABLE3 = ["math500", "minerva", "olympiadbench", "amc23", "aime24"]


def table3(metrics: dict[str, dict], paper_rows: list[dict]) -> tuple[list[str], dict]:
    """Paper Table 3: the LLaMA-3.1-8B base model trained with CGD beside SimpleRL-Zero's official
    numbers (which the paper copies; a reference row, never run here) over five benchmarks and their
    plain mean. The base model's own row has no paper number."""
    columns = TABLE3 + ["avg"]
    reported = {(r["method"], r["benchmark"]): r["value"] for r in paper_rows if r["table"] == "table3"}
    runs = by_method(metrics)
    rows = {"simplerl_zero": {c: Cell(None, None, None, reported.get(("simplerl_zero", c)), paper_only=True)
                              for c in columns}}
    for method in ("base", "cgd"):
        cells = {c: _cell(run_value(runs.get(method, []), c), reported.get((method, c))) for c in TABLE3}
        vals = [cells[c].run for c in TABLE3]
        cells["avg"] = Cell(None if None in vals else round(sum(vals) / len(vals), 1), None, None,
                            reported.get((method, "avg")))
        rows[method] = cells
    return columns, rows


def seed_table(metrics: dict[str, dict]):
    """Appendix A: per trained method and benchmark, the accuracy of each seed, their mean, sample
    standard deviation and the 95% t-interval over seeds (a single seed has neither)."""
    import statistics

    import pandas as pd

    rows = []
    for name, m in sorted(metrics.items()):
        match = re.fullmatch(r"(\w+)-seed(\d+)", name)
        if match:
            for bench, v in m.get("benchmarks", {}).items():
                if v.get("accuracy", {}).get("mean") is not None:
                    rows.append((match.group(1), bench, int(match.group(2)), v["accuracy"]["mean"],
                                 v.get("grader", "unrecorded")))
    out = []
    for (method, bench), group in pd.DataFrame(rows, columns=["m", "b", "s", "a", "g"]).groupby(["m", "b"], sort=False):
        accs = list(group.a)
        mean, lo, hi = _over_seeds([(a, None, None) for a in accs])
        out.append({"method": method, "benchmark": bench, "seeds": len(accs),
                    **{f"seed{s}": round(a, 1) for s, a in zip(group.s, accs)},
                    "mean": round(mean, 1), "sd": round(statistics.stdev(accs), 2) if len(accs) > 1 else None,
                    "ci_low": None if len(accs) < 2 else round(lo, 1),
                    "ci_high": None if len(accs) < 2 else round(hi, 1),
                    "grader": ", ".join(sorted(set(group.g)))})
    return pd.DataFrame(out)


# Teachers the paper's Table 8 reports, by the hub id a run names them with.
PAPER_TEACHERS = {"meta-llama/Llama-3.3-70B-Instruct": "LLaMA3.3-70B Instruct", "simplescaling/s1.1-32B": "S1.1-32B"}


def table8(base: dict[str, dict], runs_by_teacher: dict[str, dict[str, dict]], paper_rows: list[dict],
           paper_model: str) -> tuple[list[str], dict]:
    """Paper Table 8: the base student and one CGD row per teacher (rows "cgd@<teacher>"), in
    Table 1's columns. `runs_by_teacher` maps a teacher model to the eval metrics of the runs whose
    data it critiqued and refined; a teacher the paper reports gets its numbers beside the run."""
    columns = list(paper.GROUP1) + ["avg_group1"] + list(paper.GROUP2) + ["avg_group2"]
    reported = {(r["method"], r["setting"], r["benchmark"]): r["value"] for r in paper_rows
                if r["table"] == "table8" and r["model"] == paper_model}
    rows = {"base": {c: _cell(run_value(list(base.values()), c), reported.get(("base", "", c)))
                     for c in columns}}
    for teacher, metrics in runs_by_teacher.items():
        setting = f"teacher={PAPER_TEACHERS[teacher]}" if teacher in PAPER_TEACHERS else None
        runs = [m for runs in by_method(metrics).values() for m in runs]
        rows[f"cgd@{teacher}"] = {c: _cell(run_value(runs, c), reported.get(("cgd", setting, c)))
                                  for c in columns}
    return columns, rows


# ---------------------------------------------------------------- beyond the paper: flaw sources

# What each source's data look like, beside the accuracies: a weaker source changes the mixture.
FLAW_DATA_COLUMNS = ["incorrect_yprime", "critique_accuracy", "train_rows"]
OWN = "student"  # the flaw-source table's name for the student's own rollouts (the main run)


def flaw_source_stats(rollout: dict, critique: dict, refine: dict) -> dict[str, float | int | None]:
    """A source's data from its stage 02-04 reports: the share of its verifiable y' the verifier
    marks incorrect (%), the critiques' conclusions agreeing with the verifier (%), and the rows of
    stage 04's mixture the methods train on."""
    verifiable, correct = rollout.get("student_verifiable") or 0, rollout.get("student_correct") or 0
    acc = critique.get("critique_accuracy")
    return {"incorrect_yprime": round(100 * (verifiable - correct) / verifiable, 1) if verifiable else None,
            "critique_accuracy": None if acc is None else round(100 * acc, 1),
            "train_rows": (refine.get("mixture") or {}).get("in_mixture")}


def flaw_source_table(methods: list[str], own: dict[str, dict], by_source: dict[str, dict[str, dict]],
                      data: dict[str, dict], paired: dict[str, dict[str, dict]],
                      evaluated: list[str]) -> tuple[list[str], dict]:
    """Beyond the paper: each method trained on y' from the student itself (the main runs, `own`) and
    from each other source (`by_source`: source -> run name -> eval metrics), and the paired
    difference source - own (`paired`: source -> method -> compare_runs' pooled report, with its
    bootstrap CI and McNemar p). Table 1's layout over the `evaluated` benchmarks: Group 1, its
    average, Group 2, its average, each average the plain mean of the group's evaluated benchmarks
    (the paired difference's own average, so Table 3's five columns average too). `data` gives each
    source's (and OWN's) flaw_source_stats. Rows "cgd@yprime=<source>", "delta_cgd@yprime=<source>"."""

    groups = {g: [b for b in [*paper.GROUP1, *paper.GROUP2, *evaluated] if b in evaluated
                  and benchmarks.REGISTRY[b].group == g] for g in (1, 2)}
    groups = {g: list(dict.fromkeys(members)) for g, members in groups.items()}
    bench_cols = [c for g in (1, 2) if groups[g] for c in (*groups[g], f"avg_group{g}")]
    columns = bench_cols + FLAW_DATA_COLUMNS

    def value(runs: list[dict], col: str) -> tuple:
        if not col.startswith("avg_group"):
            return run_value(runs, col)
        means = [[m.get("benchmarks", {}).get(b, {}).get("accuracy", {}).get("mean") for b in groups[int(col[-1])]]
                 for m in runs]
        if not means or any(a is None for accs in means for a in accs):
            return None, None, None
        return _over_seeds([(sum(accs) / len(accs), None, None) for accs in means])

    def data_cells(source: str) -> dict[str, Cell]:
        stats = data.get(source) or {}
        return {c: Cell(stats.get(c), None, None, None, digits=0 if c == "train_rows" else 1)
                for c in FLAW_DATA_COLUMNS}

    rows: dict[str, dict[str, Cell]] = {}
    for method in methods:
        mine = by_method(own).get(method, [])
        rows[f"{method}@yprime={OWN}"] = {**{c: _cell(value(mine, c), None) for c in bench_cols},
                                          **data_cells(OWN)}
        for source, metrics in by_source.items():
            runs = by_method(metrics).get(method, [])
            cells = {c: _cell(value(runs, c), None) for c in bench_cols}
            rows[f"{method}@yprime={source}"] = {**cells, **data_cells(source)}
            delta = {}
            for c in bench_cols:
                pair = (paired.get(source) or {}).get(method, {}).get(c)
                if cells[c].run is None or rows[f"{method}@yprime={OWN}"][c].run is None or not pair \
                        or pair.get("diff") is None:
                    delta[c] = Cell(None, None, None, None)
                    continue
                lo, hi = pair["ci_low"], pair["ci_high"]
                delta[c] = Cell(round(pair["diff"], 1), None if lo is None else round(lo, 1),
                                None if hi is None else round(hi, 1), None, pair.get("p_value"))
            rows[f"delta_{method}@yprime={source}"] = {
                **delta, **{c: Cell(None, None, None, None, applies=False) for c in FLAW_DATA_COLUMNS}}
    rows = {name: {c: replace(cell, beyond_paper=True) for c, cell in cells.items()} for name, cells in rows.items()}
    return columns, rows


def column_title(key: str) -> str:
    if key in benchmarks.REGISTRY:
        return benchmarks.REGISTRY[key].title
    return {"avg_group1": "Avg. (G1)", "avg_group2": "Avg. (G2)", "avg": "Avg.", "ifeval": "IFEval",
            "musr": "MUSR", "truthfulqa": "TruthfulQA", "bbh": "BBH", "humaneval": "HumanEval", "mean_entropy": "Mean entropy",
            "sd": "Std. dev.", "minus_cgd": "− CGD (paired)", "grad_norm_mean": "Mean gradient norm",
            "grad_norm_std": "Std. dev. gradient norm", "factual": "Factual critique",
            "counterfactual": "Counterfactual critique",
            "factual_minus_counterfactual": "Factual − counterfactual",
            "incorrect_yprime": "Incorrect y′ (%)", "critique_accuracy": "Critique acc. (%)",
            "train_rows": "Training rows", "greedy": "pass@1 (greedy)", "words": "Words per response",
            "steps": "Steps per response"}.get(key, key)


def to_frame(columns: list[str], rows: dict[str, dict[str, Cell]]):
    """A DataFrame of "this run [CI] / paper (diff)" strings, for Markdown and LaTeX."""
    import pandas as pd

    return pd.DataFrame([{"Method": method_title(m), **{column_title(c): cells[c].text() for c in columns}}
                         for m, cells in rows.items()])


def method_title(key: str) -> str:
    """Row titles: "+ CGD", "CGD (LR = 5e-06)" (Table 4), "CGD (teacher = org/name)" (Table 8)."""
    method, _, setting = key.partition("@")
    title = {"with_critique": "With critique", "without_critique": "Without critique",
             "with_minus_without": "With − without (paired)"}.get(method) or _title(method)
    if not setting:
        return title
    if setting.startswith("bench="):  # the pass@k and reasoning-length table (cgd/reporting/reasoning.py)
        return f"{title.removeprefix('+ ')} · {column_title(setting.removeprefix('bench='))}"
    if setting.startswith("content="):  # the critique-content table (cgd/reporting/critique_content.py)
        from cgd.distill.critique_content import LETTERS, TITLES

        condition = setting.removeprefix("content=")
        if method.startswith("delta_"):
            name = _title(method.removeprefix("delta_")).removeprefix("+ ")
            return f"Δ {name}, {LETTERS[condition]} − A: {TITLES[condition]} − relevant (paired)"
        return f"{title.removeprefix('+ ')}, {LETTERS[condition]}: {TITLES[condition]}"
    if setting.startswith("yprime="):  # the flaw-source table
        source = setting.removeprefix("yprime=")
        if method.startswith("delta_"):
            name = _title(method.removeprefix("delta_")).removeprefix("+ ")
            return f"Δ {name}: y′ by {source} − by the student (paired)"
        return f"{title.removeprefix('+ ')} (y′ by {'the student itself' if source == OWN else source})"
    kind = "LR" if re.fullmatch(r"[\d.e+-]+", setting) else "teacher"
    return f"{title.removeprefix('+ ')} ({kind} = {setting})"


def to_long(columns: list[str], rows: dict[str, dict[str, Cell]]):
    """One line per cell with numbers (the CSV), so a test or a reader can check every value."""
    import pandas as pd

    return pd.DataFrame([{"method": m, "column": c, "run": cell.run, "ci_low": cell.ci_low,
                          "ci_high": cell.ci_high, "sd": cell.sd, "p_value": cell.p_value, "paper": cell.paper,
                          "diff": cell.diff, "paper_is_reference": not cell.comparable or cell.paper_only,
                          "grader": cell.grader}
                         for m, cells in rows.items() for c, cell in ((c, cells[c]) for c in columns)])


def write(name: str, columns: list[str], rows: dict[str, dict[str, Cell]], folder: str | Path) -> list[Path]:
    """figures/<name>.md, .tex and .csv; returns the paths written."""
    from cgd.runtime.io import write_text

    folder = Path(folder)
    frame = to_frame(columns, rows)
    out = {folder / f"{name}.md": frame.to_markdown(index=False) + "\n",
           folder / f"{name}.tex": frame.to_latex(index=False),
           folder / f"{name}.csv": to_long(columns, rows).to_csv(index=False)}
    for path, text in out.items():
        write_text(path, text)
    return list(out)


def main_table(data_source: str, paper_model: str) -> str:
    """Which of the paper's main tables a run reproduces: 3 for the LLaMA-3.1-8B base model, 6 for
    MetaMathQA training, 7 for the Mixtral / OLMo students, 1 otherwise."""
    if paper_model == "LLaMA3.1-8B":
        return "table3"
    if data_source == "metamathqa":
        return "table6"
    return "table7" if paper_model in ("Mixtral-8x7B Instruct", "OLMo-2-1124-7B-Instruct") else "table1"
