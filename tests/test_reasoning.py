"""Reasoning length (words, steps per response) and the pass@k table (the release's AIME24 table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgd import config as P
from cgd.evaluation import evaluate, reasoning
from cgd.reporting import paper, tables
from cgd.reporting import reasoning as report

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, words, steps", [
    ("", 0, 0),
    ("The answer is 4.", 4, 1),
    ("## Step 1: Add\n2 + 2 = 4\n\n## Step 2: Answer\nThe final answer is $\\boxed{4}$.", 14, 4),
    ("$$\nx^2 = 4\n$$\n\n---\n- x = 2", 4, 2),   # fences and bare symbols are layout
    ("don't 12, $x$ = -", 3, 1),                  # '=' and '-' alone are not words
    ("<|im_start|>think\nLet me check.\n<|im_start|>answer\nAnswer: 7", 7, 4),  # counted as generated, markers included
])
def test_words_and_steps_as_defined(text, words, steps):
    assert (reasoning.words(text), reasoning.steps(text)) == (words, steps)


def test_every_benchmark_reports_words_and_steps_of_its_greedy_answers(raw_params):
    cfg = P.from_dict(P.apply_overrides(raw_params, {"student.model": "org/x", "teacher.model": "org/x",
                                                     "eval.benchmarks": {"gsm8k": None}, "eval.pass_at_k.n": 1,
                                                     "eval.pass_at_k.k": [1]}), dvc_yaml="no-dvc.yaml")
    samples = [{"benchmark": "gsm8k", "mode": "greedy", "problem_id": f"p{i}", "output": "one two\nthree" * (i + 1),
                "correct": True, "reason": "ok", "finish_reason": "stop", "critique_like": False,
                "no_final_answer": False, "verdicts": {g: {"correct": True, "reason": "ok"} for g in ("committed", "harness")}}
               for i in range(3)]
    samples.append({**samples[0], "mode": "sampled", "output": "a " * 100})  # not counted: greedy only
    m = evaluate.benchmark_metrics(samples, {"gsm8k": {}}, cfg.eval, 0)["gsm8k"]["reasoning"]
    expected_words = [reasoning.words("one two\nthree" * (i + 1)) for i in range(3)]
    assert expected_words == [3, 5, 7]
    assert m["words"]["mean"] == 5.0 and m["words"]["n"] == 3 and m["steps"]["mean"] == 3.0


def _metrics(acc, words, steps, pass8=None):
    entry = {"accuracy": {"mean": acc, "ci_low": acc - 5, "ci_high": acc + 5},
             "reasoning": {"words": {"mean": words, "ci_low": words - 10, "ci_high": words + 10},
                           "steps": {"mean": steps, "ci_low": None, "ci_high": None}}}
    if pass8 is not None:
        entry["pass_at_k"] = {"n": 16, "pass@8": {"mean": pass8, "ci_low": None, "ci_high": None}}
    return {"benchmarks": {"aime24": entry}}


def test_the_table_has_every_model_and_the_release_beside_base_and_cgd(raw_params):
    raw = P.apply_overrides(raw_params, {"student.model": "org/x", "teacher.model": "org/x",
                                         "eval.benchmarks": {"aime24": None},
                                         "data.decontamination.benchmarks": ["aime24"],
                                         "eval.pass_at_k.benchmarks": ["aime24"], "eval.pass_at_k.k": [1, 8]})
    cfg = P.from_dict(raw, dvc_yaml="no-dvc.yaml")
    metrics = {"base": _metrics(3.3, 400.0, 10.0, 20.0), "cgd-seed0": _metrics(10.0, 2000.0, 50.0, 30.0),
               "cgd-seed1": _metrics(20.0, 2200.0, 40.0, 20.0), "cft-seed0": _metrics(5.0, 300.0, 8.0)}
    columns, rows = report.table(metrics, cfg, paper.load(), comparable=True)
    assert columns == ["greedy", "pass@1", "pass@8", "words", "steps"]
    assert list(rows) == ["base@bench=aime24", "cgd@bench=aime24", "cft@bench=aime24"]
    base, cgd = rows["base@bench=aime24"], rows["cgd@bench=aime24"]
    assert base["greedy"].text() == "3.3 [-1.7, 8.3] / 3.3 (+0.0)"
    assert cgd["greedy"].run == 15.0 and cgd["greedy"].sd == 7.1 and cgd["greedy"].paper == 16.7
    assert cgd["words"].text() == "2100 ± 141 / 2110 (-10)" and cgd["steps"].run == 45.0
    assert cgd["pass@8"].paper == 23.3 and cgd["pass@8"].paper_sd == 0.0
    assert rows["cft@bench=aime24"]["pass@8"].text().startswith("not run")
    assert rows["cft@bench=aime24"]["words"].paper is None
    assert tables.method_title("cgd@bench=aime24").endswith("· AIME 2024") or "AIME" in tables.method_title("cgd@bench=aime24")
    off = P.from_dict(P.apply_overrides(raw, {"eval.pass_at_k.benchmarks": []}), dvc_yaml="no-dvc.yaml")
    assert report.columns_for(off)[1] == ["greedy", "words", "steps"]
