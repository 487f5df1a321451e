import json
from collections import Counter
from pathlib import Path

import pytest

from cgd.distill import prompts
from cgd.grading import judge, labels

ENDINGS = [json.loads(line) for line in
           (Path(__file__).parent / "fixtures" / "critique_endings.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("text, expected", [
    ("Step 2 is wrong.\n\nConclusion: wrong", "wrong"),
    ("All good. Conclusion: right", "right"),
    ("Conclusion: **Wrong**.", "wrong"),
    ("conclusion - Correct", "right"),
    ("Conclusion: Incorrect", "wrong"),
    ("Conclusion: right ... on reflection, Conclusion: wrong", "wrong"),
    ("The answer is wrong.", "wrong"),  # no label: the closing sentence about the answer decides
    ("", "missing"),
])
def test_conclusion(text, expected):
    assert labels.conclusion(text) == expected


@pytest.mark.parametrize("case", ENDINGS, ids=[f"{i}-{e['teacher']}" for i, e in enumerate(ENDINGS)])
def test_conclusion_reads_the_final_verdict_of_real_teacher_styles(case):
    assert labels.conclusion(case["ending"]) == case["expected"]


def test_the_endings_table_covers_the_profiles_teachers():
    teachers = Counter(e["teacher"] for e in ENDINGS)
    assert len(ENDINGS) >= 40 and min(teachers.values()) >= 6 and len(teachers) == 4
    assert {e["expected"] for e in ENDINGS} == {"right", "wrong", "missing"}


@pytest.mark.parametrize("gold, prediction, expected", [
    ("18", "so she makes \\boxed{18} dollars", True),
    ("18", "The answer is: 18", True),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}", True),
    ("72", "\\boxed{71}", False),
    ("72", "I am not sure.", False),
    (None, "\\boxed{1}", None),
])
def test_the_data_stages_judge_gold_first(gold, prediction, expected):
    assert judge.is_correct(gold, prediction) is expected


def test_builtin_prompts_render_their_fields():
    rollout = prompts.load("rollout").render(question="What is 2+2?")
    assert [m["role"] for m in rollout] == ["system", "user"] and "\\boxed{}" in rollout[0]["content"]
    assert rollout[1]["content"] == "What is 2+2?"
    critique = prompts.load("critique").render(question="Q?", student_answer="A.")[0]["content"]
    assert "Q?" in critique and "A." in critique and '"Conclusion: right"' in critique
    refine = prompts.load("refine")
    text = refine.render(question="Q?", student_answer="A.", critique="C.")[0]["content"]
    assert all(s in text for s in ("Q?", "A.", "C.")) and refine.version == f"refine-{prompts.VERSION}"


def test_custom_prompt_file(tmp_path):
    good = tmp_path / "rollout.txt"
    good.write_text("Solve: {question} (box the answer: \\boxed{{}})")
    p = prompts.load("rollout", str(good))
    assert p.version.startswith("custom:") and p.render(question="1+1")[-1]["content"].startswith("Solve: 1+1")
    bad = tmp_path / "critique.txt"
    bad.write_text("Critique {question}")
    with pytest.raises(ValueError, match="student_answer"):
        prompts.load("critique", str(bad))


def test_the_student_sees_one_layout_in_rollout_training_and_evaluation():
    from cgd.data.benchmarks import Problem
    from cgd.evaluation import evaluate as evaluation
    from cgd.training import records

    question = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?"
    row = {"id": "r1", "question": question, "reference_solution": "48 \\boxed{48}",
           "refined_answer": "\\boxed{48}"}
    t = records.templates()
    views = {"rollout": prompts.load("rollout").render(question=question),
             "sft": records.sft(row, t)["prompt"], "distilled_sft": records.distilled_sft(row, t)["prompt"],
             "eval": evaluation.messages(Problem("gsm8k", "p1", question, "48", "math"))}
    assert all(v == views["eval"] for v in views.values()), views
    assert views["eval"] == prompts.student_messages(question)
    mc = evaluation.messages(Problem("mmlu_pro", "p2", "Which? (A) x (B) y", "A", "choice", n_options=2))
    assert "letter of the correct option" in mc[0]["content"] and mc[1]["content"] == "Which? (A) x (B) y"
