"""Checkpoint selection (eval.checkpoint, issue 40): snapshots, the validation split, the pick."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cgd import config as P
from cgd.data import sampling
from cgd.evaluation import selection
from cgd.generation import Backend, Completion
from cgd.reporting import build
from cgd.runtime.io import write_jsonl

REPO = Path(__file__).resolve().parents[1]


def _params(raw_params, **checkpoint):
    raw_params["train"]["snapshot_steps"] = 2
    raw_params["eval"]["checkpoint"].update(checkpoint)
    return P.from_dict(raw_params, REPO / "dvc.yaml")


def test_selection_needs_snapshots(raw_params):
    raw_params["eval"]["checkpoint"]["select"] = "validation"
    with pytest.raises(P.ParamsError, match="eval.checkpoint.select"):
        P.from_dict(raw_params, REPO / "dvc.yaml")


def test_candidates_are_the_snapshots_in_step_order_then_the_final_model(tmp_path):
    for step in (10, 2, 4):
        (tmp_path / "m" / "steps" / f"step{step}").mkdir(parents=True)
    assert [n for n, _ in selection.candidates(tmp_path / "m")] == ["step2", "step4", "step10", "final"]
    assert selection.candidates(tmp_path / "none") == [("final", str(tmp_path / "none"))]


def test_the_validation_split_is_held_out_of_every_benchmark_and_the_training_questions(raw_params, tmp_path):
    params = _params(raw_params, select="validation", validation_rows=20)
    train_file = tmp_path / "train.jsonl"
    problems, counts = selection.validation_problems(params, 0, None)
    # a training sample that holds the first validation problem's question
    write_jsonl(train_file, [{"id": "t0", "question": problems[0].problem}])
    again, counts2 = selection.validation_problems(params, 0, str(train_file))
    assert counts2["left_out"]["training_question"] == 1 and problems[0].id not in {p.id for p in again}
    assert len(problems) == 20 and all(p.benchmark == "math" and p.id.startswith("math-train-") for p in problems)
    index = sampling.build_index(params.data.decontamination.benchmarks, params.data.decontamination.ngram)
    assert all(index.match(p.problem) is None for p in problems)
    assert counts["left_out"]["contaminated"] > 0  # MATH train shares problems with MATH/MATH-500 test
    assert counts2["left_out"]["contaminated"] == counts["left_out"]["contaminated"]  # only the training question moved


class _Oracle(Backend):
    """Answers right on the problems in `right`, wrong elsewhere."""

    name = "oracle"

    def __init__(self, gold: dict[str, str], right: set[str]):
        self.gold, self.right = gold, right

    def generate(self, requests, seed, gen=None):
        out = []
        for r in requests:
            pid = r.id.split("#")[0]
            ans = self.gold[pid] if pid in self.right else "-12345"
            out.append(Completion(f"So the answer is \\boxed{{{ans}}}.", "stop"))
        return out


@pytest.mark.parametrize("select", ["validation", "math500"])
def test_the_best_candidate_is_picked_ties_to_the_later(raw_params, tmp_path, select):
    params = _params(raw_params, select=select, validation_rows=6)
    params = replace(params, eval=replace(params.eval, generation=replace(params.eval.generation, backend="transformers")))
    model = tmp_path / "model"
    for step in (2, 4, 6):
        (model / "steps" / f"step{step}").mkdir(parents=True)
        (model / "steps" / f"step{step}" / "config.json").write_text(f'{{"step": {step}}}')
    (model / "config.json").write_text("{}")
    problems, _ = selection.selection_problems(params, params.seed)
    probs = next(iter(problems.values()))
    gold = {p.id: p.answer for p in probs}
    ids = [p.id for p in probs]
    solved = {"step2": set(ids[:2]), "step4": set(ids[:4]), "step6": set(ids[1:5]), "final": set(ids[:1])}

    def backend_for(path, folder):
        name = Path(path).name if Path(path).name.startswith("step") else "final"
        return (lambda: _Oracle(gold, solved[name])), (lambda: None)

    result = selection.select(params, str(model), tmp_path / "out", backend_for, params.seed)
    acc = {c["candidate"]: c["correct"] for c in result["candidates"]}
    assert acc == {"step2": 2, "step4": 4, "step6": 4, "final": 1}
    assert result["selected"] == "step6" and result["path"].endswith("steps/step6")  # tie -> the later
    assert result["label"] == selection.LABELS[select]


def test_tables_name_a_selection_on_math500():
    report = build.Report.__new__(build.Report)
    report.points = []
    report.metrics = {"cgd-seed0": {"benchmarks": {"math500": {"grader": "harness"}},
                                    "checkpoint": {"label": selection.LABELS["math500"]}}}
    assert report.rule == "harness; selected on MATH-500 (a test set)"
    report.metrics["cgd-seed0"].pop("checkpoint")
    assert report.rule == "harness"


def test_training_writes_step_snapshots_into_the_model_folder(tiny_model, tmp_path):
    from tests.test_train import _train_tiny

    metrics, out = _train_tiny(tiny_model, tmp_path, "snap", snapshot_steps=2)
    assert metrics["steps"] == 4
    steps = sorted(p.name for p in (out / "model" / "steps").iterdir())
    assert steps == ["step2"]  # step 4 is the final model itself
    assert (out / "model" / "steps" / "step2" / "model.safetensors").exists()
    assert not (out / "model.steps").exists()
    assert [n for n, _ in selection.candidates(out / "model")] == ["step2", "final"]
