"""Ablations and parameter sweeps: a chain of numbered notebooks run once per grid point.

A point is a folder holding everything its notebooks wrote (executed copies under runs/, data,
model, eval shards) and, written last, `metrics.json`: the point's values, its train and eval
metrics and a fingerprint of what it ran. One runner serves both ways of sweeping:

- DVC: each `ablate_*` matrix item in dvc.yaml is one point (`python -m cgd sweep-point`), cached
  and invalidated by DVC like any stage;
- papermill without DVC: `python -m cgd sweep` walks a grid, skips points already done with the
  same params, resumes an interrupted point at its first unfinished notebook, and keeps a summary.

Either way the figures stage reads the points' metrics.json (paper Table 4, 8, Figs. 5, 6, 7).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cgd import config as P
from cgd.runtime import io, provenance, shards

NOTEBOOKS = Path("notebooks")
# Inputs a step reads when no earlier step of the same point produced them: the main pipeline's.
PIPELINE = {"train": "data/01_sample/train.jsonl", "rollouts": "data/02_rollout/rollouts.jsonl",
            "critiques": "data/03_critique/critiques.jsonl", "cgd_data": "data/04_refine/cgd_data.jsonl"}
STEPS = ("01_sample_data", "02_rollout", "03_critique", "04_refine", "mixture", "critique_content", "05_train",
         "06_eval")
DATA_STEPS = ("mixture", "critique_content")  # steps that rewrite stage 04's rows in-process, no notebook


@dataclass(frozen=True)
class Ablation:
    chain: tuple[str, ...]  # the steps of one point, in order
    axis: str  # the point value a figure puts on its x axis (or a table in its rows)
    every_epoch: bool = False  # evaluate the model after every epoch, not only the final one


# The paper's ablations (Sec. 4.2.3, App. B). "mixture" re-draws stage 04's mixture from its
# refined rows (the same augment.select_mixture), so no teacher call is repeated.
ABLATIONS = {
    "lr": Ablation(("05_train", "06_eval"), "train.lr"),
    "mixture": Ablation(("mixture", "05_train", "06_eval"), "refine.incorrect_fraction"),
    "teacher": Ablation(("03_critique", "04_refine", "05_train", "06_eval"), "teacher"),
    "epochs": Ablation(("05_train", "06_eval"), "train.epochs", every_epoch=True),
    # Beyond the paper: who writes y'. A source's stages 02-04 run once (flaw_source_data), then
    # each method and seed trains on them (flaw_source); the student's own point is the main run.
    "flaw_source_data": Ablation(("02_rollout", "03_critique", "04_refine"), "flaw_source"),
    "flaw_source": Ablation(("05_train", "06_eval"), "flaw_source"),
    # The revised paper's critique-content ablation: stage 04's rows with their critiques replaced
    # (cgd/distill/critique_content.py), CGD trained on them; condition A is the main run.
    "critique_content": Ablation(("critique_content", "05_train", "06_eval"), "critique_content"),
}


@dataclass(frozen=True)
class Step:
    name: str  # a notebook stem, or one of DATA_STEPS
    label: str  # unique within the point: the executed copy's file name and its done marker
    parameters: dict  # papermill parameters (or the mixture step's arguments)
    epoch: int | None = None  # for an evaluation of an epoch snapshot


# ---------------------------------------------------------------- grids and values


def parse_value(text: str):
    """A command-line value as YAML reads it (5e-6 and 1e-05 become floats, as in params.yaml)."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
        return float(value)
    return value


def parse_assignments(items: list[str], many: bool = False) -> dict:
    """["train.lr=5e-6", ...] -> {"train.lr": 5e-06}; with `many`, "k=a,b" -> {"k": [a, b]}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"'{item}' is not KEY=VALUE")
        if key in out:
            raise ValueError(f"'{key}' is given twice")
        out[key] = [parse_value(t) for t in text.split(",")] if many else parse_value(text)
    return out


def expand(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first key varying slowest."""
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def point_name(values: dict) -> str:
    """A folder name naming the point's values, e.g. method=cgd,seed=0,train.lr=5e-06."""
    text = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return re.sub(r"[^\w.,=+-]", "_", text)


def resolve(values: dict, raw: dict) -> tuple[dict, dict]:
    """Split a point's values into params.yaml overrides (dotted keys) and notebook parameters
    (bare keys: method, seed, ...). A bare `teacher` names an entry of ablations.teacher.teachers,
    whose overrides it brings in; a bare `flaw_source` an entry of ablations.flaw_source.sources,
    which becomes rollout.model (the value stays a bare key: the point's records name it)."""
    overrides = {k: v for k, v in values.items() if "." in k}
    bare = {k: v for k, v in values.items() if "." not in k}
    if "teacher" in bare:
        teachers = raw.get("ablations", {}).get("teacher", {}).get("teachers") or {}
        if bare["teacher"] not in teachers:
            raise P.ParamsError("ablations.teacher.teachers", f"has no teacher named '{bare['teacher']}'",
                                f"add it, or use one of: {', '.join(teachers) or '(none)'}")
        overrides.update(teachers[bare.pop("teacher")])
    if "flaw_source" in bare:
        sources = raw.get("ablations", {}).get("flaw_source", {}).get("sources") or {}
        if bare["flaw_source"] not in sources:
            raise P.ParamsError("ablations.flaw_source.sources", f"has no source named '{bare['flaw_source']}'",
                                f"add it, or use one of: {', '.join(sources) or '(none)'}")
        overrides["rollout.model"] = sources[bare.pop("flaw_source")]
        # Inside the point its source is the rollout model; the grid (whose main run must be the
        # student's own rollouts, params validation says) is not the point's.
        overrides["ablations.flaw_source.sources"] = {}
    return overrides, bare


# ---------------------------------------------------------------- planning a point


def plan(chain: tuple[str, ...] | list[str], values: dict, point: Path, params_file: str, raw: dict,
         every_epoch: bool = False, eval_dir: str | Path | None = None) -> list[Step]:
    """The steps of one point with their parameters: each step writes into the point folder and
    reads what an earlier step of the chain produced, or else the main pipeline's file. `eval_dir`
    puts the trained model's graded answers there instead of <point>/eval (the flaw-source points
    write them under data/06_eval/, where stage 07 pairs them with the main runs' answers)."""
    if eval_dir is not None and every_epoch:
        raise ValueError("eval_dir takes one evaluation; every_epoch makes one per epoch")
    unknown = [s for s in chain if s not in STEPS]
    if unknown or not chain:
        raise ValueError(f"unknown step(s) {unknown or chain}; steps are {', '.join(STEPS)}")
    overrides, bare = resolve(values, raw)
    made = dict(PIPELINE)
    common = {"params_file": params_file, "overrides": overrides}
    steps: list[Step] = []
    trained = None  # (label of the run, epochs) once 05_train is in the chain
    for name in chain:
        data = point / "data"
        m = point / "metrics"
        if name == "01_sample_data":
            made["train"] = str(data / "01_sample" / "train.jsonl")
            p = {"out_file": made["train"], "dropped_file": str(data / "01_sample" / "dropped.jsonl"),
                 "metrics_file": str(m / "01_sample_data.json")}
        elif name in ("02_rollout", "03_critique", "04_refine"):
            source, product, file = {"02_rollout": ("train", "rollouts", "rollouts.jsonl"),
                                     "03_critique": ("rollouts", "critiques", "critiques.jsonl"),
                                     "04_refine": ("critiques", "cgd_data", "cgd_data.jsonl")}[name]
            p = {"in_file": made[source], "out_dir": str(data / name), "metrics_file": str(m / f"{name}.json")}
            made[product] = str(data / name / file)
        elif name == "mixture":
            p = {"in_file": made["cgd_data"], "out_file": str(data / "mixture" / "cgd_data.jsonl"),
                 "metrics_file": str(m / "mixture.json")}
            made["cgd_data"] = p["out_file"]
        elif name == "critique_content":
            if "critique_content" not in bare:
                raise ValueError("the critique_content step needs 'critique_content' among the point's values "
                                 "(a variant of ablations.critique_content.variants)")
            p = {"in_file": made["cgd_data"], "out_file": str(data / "critique_content" / "cgd_data.jsonl"),
                 "metrics_file": str(m / "critique_content.json"), "variant": bare["critique_content"]}
            made["cgd_data"] = p["out_file"]
        elif name == "05_train":
            for key in ("method", "seed"):
                if key not in bare:
                    raise ValueError(f"05_train needs '{key}' among the point's values (e.g. {key}=...)")
            cfg = P.load(params_file, overrides)
            trained = (f"{bare['method']}-seed{bare['seed']}", cfg.train.epochs)
            p = {"method": bare["method"], "seed": bare["seed"], "data_file": made["cgd_data"],
                 "model_dir": str(point / "model"), "live_dir": str(point / "train"),
                 "checkpoint_dir": str(point / "checkpoints"),
                 "snapshot_dir": str(point / "epochs") if every_epoch else None}
        elif name == "06_eval":
            if trained is None:  # evaluate a named model (bare `model`, default the base student)
                steps.append(Step(name, name, {**common, **_declared(name, bare), "model": bare.get("model", "base"),
                                               "out_dir": str(point / "eval"),
                                               "metrics_file": str(m / "eval.json")}))
                continue
            run, epochs = trained
            last = int(epochs)
            targets = [(k, str(point / "epochs" / f"epoch{k}")) for k in range(1, last)] if every_epoch else []
            targets.append((last if every_epoch else None, str(point / "model")))
            for epoch, path in targets:
                suffix = "" if epoch is None else f"-epoch{epoch}"
                steps.append(Step(name, f"06_eval{suffix}", {
                    **common, **_declared(name, bare), "model": run + suffix, "model_path": path,
                    "out_dir": str(point / "eval" / f"epoch{epoch}" if suffix else eval_dir or point / "eval"),
                    "metrics_file": str(m / f"eval{suffix}.json")}, epoch))
            continue
        steps.append(Step(name, name, _merge(common, _declared(name, bare), p)))
    if every_epoch and trained is None:
        raise ValueError("evaluating every epoch needs 05_train in the chain")
    return steps


def _declared(step: str, bare: dict) -> dict:
    """The point's bare values that the step's notebook declares as parameters (e.g. base_samples)."""
    if step in DATA_STEPS:
        return {}
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook_path(step)))
    return {k: v for k, v in bare.items() if k in declared}


def _merge(common: dict, declared: dict, wired: dict) -> dict:
    """A step's parameters: the folders `plan` wires win, except that an input still pointing at
    the main pipeline's file yields to one the point names (e.g. data_file=other.jsonl)."""
    out = {**common, **declared, **wired}
    for key, value in declared.items():
        if wired.get(key) in PIPELINE.values():
            out[key] = value
    return out


# ---------------------------------------------------------------- running a point


def execute_notebook(name: str, out: Path, parameters: dict, kernel: str) -> None:
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("CGD_PROGRESS")
    os.environ["CGD_PROGRESS"] = "text"  # the point's kernel has no frontend to draw widgets (cgd/runtime/progress.py)
    try:
        pm.execute_notebook(str(notebook_path(name)), str(out), parameters=parameters, kernel_name=kernel,
                            progress_bar=False, log_output=False)
    finally:
        if before is None:
            os.environ.pop("CGD_PROGRESS", None)
        else:
            os.environ["CGD_PROGRESS"] = before


def notebook_path(stem: str) -> Path:
    path = NOTEBOOKS / f"{stem}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no notebook {path}")
    return path


def redraw_mixture(in_file: str, out_file: str, metrics_file: str, params_file: str, overrides: dict) -> dict:
    """The mixture step: stage 04's refined rows with the mixture drawn again at the point's
    refine.incorrect_fraction / mixture_total / label_source (the function stage 04 uses)."""
    from cgd.distill import augment

    cfg = P.load(params_file, overrides)
    if cfg.refine.incorrect_fraction is None or cfg.refine.mixture_total is None:
        raise P.ParamsError("refine.incorrect_fraction", "and refine.mixture_total must be set for a mixture point",
                            "set both (the ablation's stage passes them)")
    rows = list(io.read_jsonl(in_file))
    try:
        final, report = augment.select_mixture(rows, cfg.refine, cfg.seed)
    except ValueError as exc:
        raise ValueError(f"{exc} (the mixture ablation takes these from ablations.mixture.total and "
                         "incorrect_fractions)") from exc
    io.write_jsonl(out_file, final)
    report = {"from": in_file, "rows": len(rows), **report}
    io.write_json(metrics_file, provenance.stamp(report))
    return report


def replace_critiques(in_file: str, out_file: str, metrics_file: str, params_file: str, overrides: dict,
                      variant: str) -> dict:
    """The critique_content step: stage 04's rows with each training row's critique replaced per
    `variant` (irrelevant: another row's, a derangement seeded by params `seed`; generic: the file's text)."""
    from cgd.distill import critique_content

    cfg = P.load(params_file, overrides)
    if variant not in cfg.ablations.critique_content.variants:
        raise P.ParamsError("ablations.critique_content.variants", f"lacks '{variant}', the point's variant",
                            f"add it, or use one of: {', '.join(cfg.ablations.critique_content.variants) or '(none)'}")
    try:
        generic = critique_content.load_generic(cfg.ablations.critique_content.generic_file)
    except ValueError as exc:
        raise P.ParamsError("ablations.critique_content.generic_file", str(exc)) from exc
    rows = list(io.read_jsonl(in_file))
    final, report = critique_content.replace(rows, variant, cfg.seed, generic)
    io.write_jsonl(out_file, final)
    report = {"from": in_file, **report}
    io.write_json(metrics_file, provenance.stamp(report))
    return report


def point_fingerprint(chain, values: dict, every_epoch: bool, raw: dict) -> str:
    """What makes a point's results: its steps, values and the params they run with. The figures,
    ablations and diagnostics sections shape no point (a teacher's overrides enter through `values`)."""
    overrides, _ = resolve(values, raw)
    params = {k: v for k, v in P.apply_overrides(raw, overrides).items()
              if k not in ("figures", "ablations", "diagnostics")}
    shaped = {"chain": list(chain), "values": values, "every_epoch": every_epoch, "params": params}
    if "critique_content" in chain:  # the generic text shapes the point, wherever it is read from
        from cgd.distill import critique_content

        spec = raw.get("ablations", {}).get("critique_content", {})
        shaped["generic_critique"] = critique_content.load_generic(spec.get("generic_file")).text
    return shards.fingerprint(shaped)


def run_point(point: str | Path, chain, values: dict, params_file: str = "params.yaml",
              ablation: str | None = None, every_epoch: bool = False, kernel: str = "cgd",
              execute=execute_notebook, eval_dir: str | Path | None = None) -> dict:
    """Run (or finish) one point; returns its metrics.json content, with "status" done or skipped."""
    point = Path(point)
    raw = yaml.safe_load(Path(params_file).read_text())
    overrides, _ = resolve(values, raw)
    P.load(params_file, overrides)  # a bad value fails here, before any notebook starts
    fp = point_fingerprint(chain, values, every_epoch, raw)
    summary_path = point / "metrics.json"
    if summary_path.exists() and io.read_json(summary_path).get("fingerprint") == fp:
        return {**io.read_json(summary_path), "status": "skipped"}
    steps = plan(chain, values, point, params_file, raw, every_epoch, eval_dir)
    for step in steps:
        marker = point / "done" / f"{step.label}.json"
        if marker.exists() and io.read_json(marker).get("fingerprint") == fp:
            print(f"{point}: {step.label} already done", flush=True)
            continue
        start = time.perf_counter()
        if step.name == "mixture":
            redraw_mixture(**step.parameters)
        elif step.name == "critique_content":
            replace_critiques(**step.parameters)
        else:
            execute(step.name, point / "runs" / f"{step.label}.ipynb", step.parameters, kernel)
        wall = round(time.perf_counter() - start, 1)
        io.write_json(marker, {"fingerprint": fp, "wall_s": wall})
        print(f"{point}: {step.label} done in {wall} s", flush=True)
    result = collect(point, steps, values, overrides, ablation, list(chain), fp)
    io.write_json(summary_path, provenance.stamp(result))
    return {**result, "status": "done"}


def collect(point: Path, steps: list[Step], values: dict, overrides: dict, ablation: str | None,
            chain: list[str], fp: str) -> dict:
    """metrics.json of a point: what it is, what each step took, and the metrics figures read."""
    result = {"ablation": ablation, "values": values, "overrides": overrides, "chain": chain,
              "fingerprint": fp, "wall_s": {}, "data": {}, "train": None, "mixture": None,
              "critique_content": None, "eval": {}}
    for step in steps:
        result["wall_s"][step.label] = io.read_json(point / "done" / f"{step.label}.json")["wall_s"]
        if step.name == "05_train":
            m = io.read_json(Path(step.parameters["live_dir"]) / "metrics.json")
            result["train"] = {k: m.get(k) for k in ("method", "seed", "steps", "epochs", "records",
                                                     "train_loss", "final_loss", "wall_s")}
        elif step.name in DATA_STEPS:
            result[step.name] = io.read_json(step.parameters["metrics_file"])
        elif step.name in ("01_sample_data", "02_rollout", "03_critique", "04_refine"):
            # the stage reports (rows, statuses, student accuracy, critique accuracy, mixture)
            m = io.read_json(step.parameters["metrics_file"])
            result["data"][step.name] = {k: v for k, v in m.items() if k != "provenance"}
        elif step.name == "06_eval":
            m = io.read_json(step.parameters["metrics_file"])
            result["eval"][step.label] = {
                "model": m.get("model"), "epoch": step.epoch, "groups": m.get("groups"),
                "samples": str(Path(step.parameters["out_dir"]) / "samples.jsonl"),
                # the grader too: tables tag every accuracy with the rule that graded it
                "benchmarks": {b: {"group": v.get("group"), "accuracy": v["accuracy"], "grader": v.get("grader")}
                               for b, v in m.get("benchmarks", {}).items()}}
    return result


# ---------------------------------------------------------------- a grid of points


def sweep(out: str | Path, chain, grid: dict[str, list], fixed: dict | None = None,
          params_file: str = "params.yaml", ablation: str | None = None, every_epoch: bool = False,
          kernel: str = "cgd", execute=execute_notebook):
    """Run every point of `grid` (plus the `fixed` values) under `out`/<point name>/; returns the
    summary (also written to out/summary.csv and .md after each point). A point that fails is
    recorded as failed and the sweep goes on; an interrupt stops it, and a rerun resumes."""
    import pandas as pd

    from cgd.runtime.progress import bar as progress_bar

    out = Path(out)
    points = [{**(fixed or {}), **v} for v in expand(grid)]
    rows = []
    bar = progress_bar(points, desc=f"sweep {out}", unit="point")
    for values in bar:
        point = out / point_name(values)
        bar.set_postfix_str(point.name)
        start = time.perf_counter()
        try:
            result = run_point(point, chain, values, params_file, ablation, every_epoch, kernel, execute)
        except Exception as exc:  # noqa: BLE001 -- one bad point must not lose the others
            print(f"{point}: failed: {exc}", file=sys.stderr, flush=True)
            result = {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                      "values": values, "eval": {}, "train": None}
        rows += summary_rows(point, result, time.perf_counter() - start)
        write_summary(out, rows)
    return pd.DataFrame(rows)


def summary_rows(point: Path, result: dict, seconds: float) -> list[dict]:
    """One row per evaluation of the point (one per epoch for an epochs point), or one without."""
    base = {**result["values"], "point": point.name, "status": result["status"],
            "seconds": round(seconds, 1),
            "train_loss": (result.get("train") or {}).get("train_loss")}
    evals = result.get("eval") or {}
    if not evals:
        return [base]
    rows = []
    for label, ev in evals.items():
        accs = {b: v["accuracy"]["mean"] for b, v in ev["benchmarks"].items()}
        mean = sum(accs.values()) / len(accs) if accs else None
        rows.append({**base, "eval": label, "epoch": ev.get("epoch"), **accs,
                     "mean_accuracy": None if mean is None else round(mean, 2)})
    return rows


def write_summary(out: Path, rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    io.write_text(out / "summary.csv", frame.to_csv(index=False))
    io.write_text(out / "summary.md", frame.to_markdown(index=False) + "\n")
