"""The one judge (cgd/grading/judge.py): credit only for a committed answer under our rule, and the
authors' harness rule beside it, on answers real models wrote (the CPU demo's, in
tests/fixtures/grading/demo_outputs.jsonl) and realistic ones written in their style."""

import random
import time
from pathlib import Path

import pytest

from cgd.distill import augment, prompts
from cgd.generation.base import Completion
from cgd.grading import harness, harness_equal, judge
from cgd.grading.commitment import committed
from cgd.grading.rules import Key
from cgd.runtime.io import read_jsonl

DEMO = {r["problem_id"]: r for r in read_jsonl(Path(__file__).parent / "fixtures" / "grading" / "demo_outputs.jsonl")}


def _key(row: dict) -> Key:
    return Key(row["gold"], row["answer_type"], benchmark=row["benchmark"])


# ---------------------------------------------------------------- the demo's own answers

@pytest.mark.parametrize("problem_id", ["test/algebra/2680.json", "test/algebra/1275.json",
                                        "test/precalculus/1252.json"])
def test_the_demos_answers_that_state_nothing_grade_wrong(problem_id):
    # The 135M SFT model restated the question's expression (twice) or looped to the token limit;
    # math-verify proves those expressions equal to the gold, so the last-expression reading credited them.
    row = DEMO[problem_id]
    verdicts = judge.judge(_key(row), row["output"])
    assert verdicts["committed"].correct is False and verdicts["committed"].reason == "no_final_answer"
    assert verdicts["harness"].correct is False  # its last-number fallback reads a number that is not the gold


def test_the_demos_hundredfold_answer_is_wrong_for_us_and_right_for_the_harness():
    row = DEMO["gsm8k-test-726"]  # gold 10, "#### 1000": the harness accepts 100x a numeric gold
    verdicts = judge.judge(_key(row), row["output"])
    assert (verdicts["committed"].correct, verdicts["committed"].extracted) == (False, "1000")
    assert (verdicts["harness"].correct, verdicts["harness"].extracted) == (True, "1000")


# ---------------------------------------------------------------- what counts as committing to an answer

RESTATED = "Simplify $\\frac{(10r^3)(4r^6)}{8r^4}$.\n\nWe have\n$$\\frac{(10r^3)(4r^6)}{8r^4}$$"
LOOP = "Since $\\omega^3 = 1$, we have\n$$1 + \\omega^2 = " + "1 + \\omega^2 + \\omega^2 = " * 30  # cut mid-loop
COMMITTED = [
    # (gold, output, our verdict, what our rule reads)
    ("5r^5", RESTATED, False, None),  # the question restated, no answer given
    ("1", LOOP, False, None),  # a loop cut at the token limit
    ("42", "Step 1: 6 * 7 = 42.\nStep 2: add the boxes", False, None),  # working, no statement
    ("42", "6 * 7 = 42, so she has \\boxed{42} apples.", True, "42"),
    ("42", "Janet sells 6 * 7 = 42 eggs.\n#### 42", True, "42"),
    ("42", "#### Step 1: count the eggs\n6 * 7 = 42", False, None),  # a Markdown heading, not GSM8K's ####
    ("42", "So the answer is 42.", True, "42"),
    ("42", "**Final Answer:** 42", True, "42"),
    ("42", "Answer: 42", True, "42"),
    ("\\frac{1}{2}", "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", True,
     "$\\frac{1}{2}$"),
    # answers given mid-text, then revised: the last statement counts
    ("7", "The answer is 5. Wait, 3 + 4 is 7, not 5. The answer is 7.", True, "7"),
    ("7", "So \\boxed{5}.\n\nLet me double-check: 3 + 4 = 7, so the answer is \\boxed{7}.", True, "7"),
    ("5", "So \\boxed{5}.\n\nLet me double-check: 3 + 4 = 7, so the answer is \\boxed{7}.", False, "7"),
    ("7", "The answer is $\\boxed{5}$. Hmm, rechecking the sum, the answer is 7.", True, "7"),
    ("18", "She makes 18 dollars.\nThe answer is: 18 dollars", True, "18 dollars"),
]


@pytest.mark.parametrize("gold,output,correct,stated", COMMITTED)
def test_credit_only_for_a_committed_answer(gold, output, correct, stated):
    verdict = judge.judge(Key(gold, benchmark="math500"), output)["committed"]
    assert verdict.correct is correct, verdict
    assert (committed(output).answer if committed(output) else None) == stated
    if stated is None:
        assert verdict.reason == "no_final_answer"


def test_the_old_reading_credited_the_restated_and_looping_outputs():
    # What the last-expression reading saw in them: the gold, proved equal by math-verify.
    from math_verify import parse, verify

    assert verify(parse("$5r^5$"), parse(RESTATED))
    assert verify(parse("$1$"), parse(LOOP))


# ---------------------------------------------------------------- the authors' rule, quirks included

@pytest.mark.parametrize("prediction,reference,equal", [
    ("1000", "10", True),  # 100x the gold: the percentage rule
    ("0.1", "10", True),  # and 1/100
    ("3.14", "3.1", True),  # equal after rounding both to one decimal
    ("2.04", "2", True),
    ("2.06", "2", False),
    ("10.0005", "10", True),  # within rel. 1e-4
    ("\\frac{1}{2}", "0.5", True),  # sympy
    ("(1,2)", "(1,2)", True),
    ("(2,1)", "(1,2)", False),
    ("5", "x=5", True),  # the "=" post-processing
    ("5.89\\times10^{-7}", "5.89e-7", True),
])
def test_math_equal_as_released(prediction, reference, equal):
    assert harness_equal.math_equal(prediction, reference) is equal


@pytest.mark.parametrize("text,normalised", [
    ("5 cm", "5"),  # a MathQA unit word
    ("18 dollars", "18dollars"),  # not one of them
    ("five", "5"),  # word numbers
    ("x = 5", "5"),
    ("3/4", "\\frac{3}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("50\\%", "50"),
    ("10\\text{ cm}", "10"),
    ("\\dfrac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{3}"),
    ("2.50", "2.50"),
    ("2.0", "2"),
])
def test_strip_string_as_released(text, normalised):
    assert harness.strip_string(text) == normalised


@pytest.mark.parametrize("output,data_name,prediction", [
    ("She has 3 apples and 4 pears, so 7 fruit in all", "gsm8k", "7"),  # the last number, stated or not
    ("The answer is 12 apples.", "gsm8k", "12"),
    ("first \\boxed{3} then \\boxed{4}", "math", "4"),
    ("Final Answer: The final answer is $2x$. I hope it is correct.", "minerva_math", "2x"),
    ("no numbers here", "math", ""),
    ("\\boxed{12}<|eot_id|> and then \\boxed{13}", "math", "12"),  # cut at its stop words first
])
def test_extraction_as_released(output, data_name, prediction):
    assert harness.prediction(output, "0", data_name) == prediction


@pytest.mark.parametrize("output,letter", [
    ("The answer is (C). On reflection the answer is (D).", "C"),  # the first "answer is"
    ("Answer: B\nAnswer: D", "B"),
    ("It is between A and D; I pick D", "D"),  # the last lone capital letter
    ("I am not sure", "I"),  # "I" is a letter A-J too
    ("no letters at all", None),
])
def test_choice_letters_as_the_mmlu_pro_script_reads_them(output, letter):
    assert harness.extract_letter(output) == letter


def test_no_letter_is_a_seeded_random_guess():
    guess = random.Random(12345).randint(0, 3)
    for gold in "ABCD":
        verdict = harness.grade(Key(gold, "choice", 4, benchmark="gpqa"), "no letters at all")
        assert verdict.reason == "random_guess" and verdict.correct is ("ABCD"[guess] == gold)


def test_the_harness_is_bounded_by_its_time_limit():
    tower = "^".join(["9"] * 12)
    start = time.perf_counter()
    verdict = harness.grade(Key("1", benchmark="math500"), f"\\boxed{{{tower} - {tower} + 1}}", timeout_s=1)
    assert time.perf_counter() - start < 5
    assert verdict.reason in ("timeout", "correct", "wrong")


def test_parse_expr_is_never_handed_text_that_acts(tmp_path):
    target = tmp_path / "written"
    assert not harness_equal.symbolic_equal(f"open('{target}', 'w')", "1")
    assert not target.exists()


# ---------------------------------------------------------------- one judge for every stage

def test_the_data_stages_and_evaluation_share_one_judgement():
    for gold, output, correct, _ in COMMITTED:
        assert judge.is_correct(gold, output) is correct
        assert judge.judge(Key(gold), output)["committed"].correct is correct


def test_stage_02_labels_a_restated_question_wrong():
    apply = augment.rollout_spec(prompts.load("rollout")).apply
    row = {"id": "r1", "question": "Simplify ...", "reference_answer": "5r^5"}
    out = apply(row, Completion(RESTATED, "stop"))
    assert out["verifier_correct"] is False and out["student_final_answer"] is None
    out = apply(row, Completion("... so it is \\boxed{5r^5}.", "stop"))
    assert out["verifier_correct"] is True and out["student_final_answer"] == "5r^5"


@pytest.mark.parametrize("problem_id,correct,reason", [
    ("test/prealgebra/505.json", True, "correct"),  # "So, the solution is $x = 6$."
    ("gsm8k-test-140", True, "correct"),  # "The solution to the question is 20%." until the token limit
    ("gsm8k-test-1231", False, "no_final_answer"),  # "The mean score is 70": a sentence, not a statement of the answer
])
def test_the_demos_answers_stated_in_words(problem_id, correct, reason):
    row = DEMO[problem_id]
    verdict = judge.judge(_key(row), row["output"])["committed"]
    assert (verdict.correct, verdict.reason) == (correct, reason)


def test_eval_grader_is_validated_early():
    from cgd import config as P

    params = Path(__file__).parents[1] / "params.yaml"
    assert P.load(params).eval.grader == "committed"
    assert P.load(params, {"eval.grader": "harness"}).eval.grader == "harness"
    with pytest.raises(P.ParamsError, match="eval.grader"):
        P.load(params, {"eval.grader": "math_verify"})
