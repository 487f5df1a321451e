"""The grader on tricky equivalences, multiple-choice extraction, and bounded timeouts."""

import time

import pytest

from cgd.grading import judge
from cgd.grading import rules as grading

# (gold, model output, expected verdict). Gold is written as the benchmarks write it; the output
# as a model would, usually ending in \boxed{}.
EQUIVALENCES = [
    # fractions, decimals, \frac vs /, \dfrac
    ("\\frac{1}{2}", "so the answer is $\\boxed{0.5}$", True),
    ("0.5", "$\\boxed{\\frac12}$", True),
    ("\\frac{3}{4}", "\\boxed{3/4}", True),
    ("\\dfrac{3}{4}", "\\boxed{\\frac{3}{4}}", True),
    ("\\tfrac{3}{4}", "\\boxed{0.75}", True),
    ("3.5", "\\boxed{\\frac{7}{2}}", True),
    ("\\frac{1}{3}", "\\boxed{0.33}", False),
    ("18", "\\boxed{18.0}", True),
    # units and \text{}
    ("10", "\\boxed{10\\text{ cm}}", True),
    ("10\\text{ cm}", "\\boxed{10}", True),
    ("90^\\circ", "\\boxed{90}", True),
    ("5", "\\boxed{\\$5}", True),
    ("\\$18.90", "\\boxed{18.9}", True),
    # percentages
    ("50\\%", "\\boxed{50}", True),
    ("50", "\\boxed{50\\%}", True),
    ("50\\%", "\\boxed{50\\%}", True),
    ("0.5", "\\boxed{50\\%}", False),
    # intervals
    ("(1, 3]", "\\boxed{(1,3]}", True),
    ("(1, 3]", "\\boxed{[1,3]}", False),
    ("(-\\infty, 2)", "\\boxed{(-\\infty,2)}", True),
    # tuples (order matters) and matrices
    ("(2, 3)", "\\boxed{(2,3)}", True),
    ("(2, 3)", "\\boxed{(3,2)}", False),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}", False),
    # multiple answers (a set: any order), +-
    ("1, 2", "\\boxed{2, 1}", True),
    ("-2, 2", "\\boxed{\\pm 2}", True),
    ("x=1 \\text{ or } x=2", "\\boxed{1, 2}", True),
    ("1, 2", "\\boxed{1}", False),
    # \boxed nesting and braces
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\boxed{\\frac{\\sqrt 3}{2}}}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\frac{\\sqrt{3}}{{2}}}", True),
    ("12", "first \\boxed{7}, then corrected: \\boxed{12}", True),
    # thousands separators
    ("1000", "\\boxed{1,000}", True),
    ("1234567", "\\boxed{1{,}234{,}567}", True),
    ("1000", "\\boxed{1,001}", False),
    # symbolic equivalence, equations, plain text
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", True),
    ("x^2+2x+1", "\\boxed{(x+1)^2}", True),
    ("y = 2x + 3", "\\boxed{2x+3}", True),
    ("3", "\\boxed{x=3}", True),
    ("\\pi", "\\boxed{3.14159}", False),
    ("12", "The final answer is 12.", True),
    ("12", "\\boxed{13}", False),
]


@pytest.mark.parametrize("gold,output,expected", EQUIVALENCES)
def test_equivalence_table(gold, output, expected):
    verdict = grading.grade_math(gold, output)
    assert verdict.correct is expected, verdict
    assert verdict.reason == ("correct" if expected else "wrong")
    assert verdict.extracted


def test_no_final_answer_is_recorded_as_such():
    verdict = grading.grade_math("12", "I am not sure how to solve this.")
    assert verdict == grading.Verdict(False, None, "no_final_answer")


CHOICES = [
    ("The answer is (C).", 4, "C"),
    ("Therefore \\boxed{B}", 4, "B"),
    ("Answer: D\n", 4, "D"),
    ("so I pick \\boxed{\\text{E}}", 10, "E"),
    ("\\boxed{(J)}", 10, "J"),
    ("(A) is wrong and (B) is wrong.\nThe answer is B", 4, "B"),
    ("first \\boxed{A}, on reflection \\boxed{C}", 4, "C"),
    ("The correct option is J", 10, "J"),
    ("The correct option is J", 4, None),  # J is not one of four options
    ("C", 4, "C"),
    ("I don't know", 4, None),
    ("Answer: K", 10, None),
]


@pytest.mark.parametrize("output,n_options,expected", CHOICES)
def test_choice_extraction(output, n_options, expected):
    assert grading.extract_choice(output, n_options) == expected


def test_grade_choice_verdicts():
    key = grading.Key("B", "choice", 4)
    assert grading.grade(key, "\\boxed{B}") == grading.Verdict(True, "B", "correct")
    assert grading.grade(key, "\\boxed{C}") == grading.Verdict(False, "C", "wrong")
    assert grading.grade(key, "no idea") == grading.Verdict(False, None, "no_final_answer")


# TheoremQA by its released grader (TIGER-AI-Lab/TheoremQA utils.py, number_utils.py): (Answer_type,
# gold as the hub writes it, output, expected).
THEOREMQA = [
    ("float", "-1.047", "\\boxed{-1.04784}", True),  # the same quantity to more digits
    ("float", "-1.047", "\\boxed{-1.047}", True),
    ("float", "-1.047", "\\boxed{-1.0}", False),  # 4.5% away
    ("float", "1898.27", "\\boxed{1898.27 \\text{ dollars}}", True),
    ("float", "0.955", "\\boxed{\\frac{21}{22}}", True),
    ("float", "0.25", "\\boxed{25\\%}", True),
    ("float", "3.464", "\\boxed{2\\sqrt{3}}", True),
    ("float", "0.0", "\\boxed{0.001}", False),  # 4% of 0 is 0
    ("float", "2.5e-05", "\\boxed{2.5 \\times 10^{-5}}", True),
    ("integer", "11760", "\\boxed{11760}", True),
    ("integer", "11760", "\\boxed{11,760}", True),
    ("integer", "8", "\\boxed{8.2}", True),  # rounds to the gold, as TheoremQA's grader
    ("integer", "8", "\\boxed{9}", False),
    ("bool", "True", "\\boxed{\\text{True}}", True),
    ("bool", "True", "The answer is yes.", True),
    ("bool", "False", "so it is \\boxed{\\text{True}}", False),
    ("bool", "False", "The answer is false.", True),
    ("bool", "False", "It is false.", False),  # no statement of a final answer (our rule)
    ("option", "(c)", "\\boxed{(c)}", True),
    ("option", "(c)", "\\boxed{C}", True),
    ("option", "(c)", "\\boxed{\\text{(c)}}", True),
    ("option", "(c)", "\\boxed{(b)}", False),
    ("list of integer", "[2, 3]", "\\boxed{2, 3}", True),  # two numbers, not the interval (2, 3)
    ("list of integer", "[2, 3]", "\\boxed{[3, 2]}", True),  # compared sorted, as its grader does
    ("list of integer", "[2, 3]", "\\boxed{(2, 3)}", True),
    ("list of integer", "[2, 3]", "\\boxed{2, 4}", False),
    ("list of integer", "[2, 3]", "\\boxed{2, 3, 4}", False),
    ("list of float", "[0.5, 1.25]", "\\boxed{[0.501, 1.26]}", True),
    ("list of float", "[0.5, 1.25]", "\\boxed{[0.5, 1.5]}", False),
]


@pytest.mark.parametrize("kind,gold,output,expected", THEOREMQA)
def test_theoremqa_by_its_own_grader(kind, gold, output, expected):
    verdict = grading.grade(grading.Key(gold, "theoremqa", kind=kind), output)
    assert verdict.correct is expected, verdict


def test_theoremqa_tolerance_is_the_param():
    key = grading.Key("100.0", "theoremqa", kind="float")
    assert grading.grade(key, "\\boxed{103.9}").correct
    assert not grading.grade(key, "\\boxed{104.1}").correct
    assert not grading.grade(key, "\\boxed{101}", grading.Rules(theoremqa_rel_tol=0.005)).correct
    assert grading.grade(key, "\\boxed{100.4}", grading.Rules(theoremqa_rel_tol=0.005)).correct


# OlympiadBench by its own judge (OpenBMB/OlympiadBench eval/auto_scoring_judge.py): (key fields,
# output, expected). Golds as benchmarks.olympiad_gold normalizes them.
OLYMPIAD = [
    (dict(gold="69, 84", multiple=True), "\\boxed{69, 84}", True),
    (dict(gold="69, 84", multiple=True), "first \\boxed{84}, then \\boxed{69}", True),  # a set
    (dict(gold="69, 84", multiple=True), "\\boxed{69}", False),
    (dict(gold="62.5%"), "\\boxed{62.5\\%}", True),
    (dict(gold="62.5%"), "\\boxed{62.5}", True),
    (dict(gold="17.5%"), "\\boxed{0.175}", True),  # its judge also reads the gold / 100
    (dict(gold="62.5%"), "\\boxed{60}", False),
    (dict(gold="60", unit="km/h"), "\\boxed{60 \\text{ km/h}}", True),
    (dict(gold="60", unit="km/h"), "\\boxed{60 km/h}", True),
    (dict(gold="70^{\\circ}", unit="^{\\circ}"), "\\boxed{70}", True),
    (dict(gold="(1,8,19), (2,7,13), (4,5,7)", kind="Tuple", multiple=True),
     "\\boxed{(2,7,13), (4,5,7), (1,8,19)}", True),
    (dict(gold="(1,8,19), (2,7,13), (4,5,7)", kind="Tuple", multiple=True), "\\boxed{(8,1,19), (2,7,13), (4,5,7)}", False),
    (dict(gold="[2,3]", kind="Interval"), "\\boxed{[2, 3]}", True),
    (dict(gold="[2,3]", kind="Interval"), "\\boxed{(2, 3)}", False),
    (dict(gold="1.41", tolerance=(0.01,)), "\\boxed{1.414}", True),
    (dict(gold="1.41", tolerance=(0.01,)), "\\boxed{1.43}", False),
    (dict(gold="1.41"), "\\boxed{1.414}", False),  # default tolerance 1e-8
    (dict(gold="M=2^{N-2}+1", kind="Expression"), "\\boxed{M = 2^{N-2} + 1}", True),
    (dict(gold="\\frac{1}{2 n+2}", kind="Expression"), "\\boxed{\\frac{1}{2(n+1)}}", True),
    (dict(gold="\\frac{1}{2 n+2}", kind="Expression"), "\\boxed{\\frac{1}{2n}}", False),
    (dict(gold="-2, 2", multiple=True), "\\boxed{\\pm 2}", True),
]


@pytest.mark.parametrize("fields,output,expected", OLYMPIAD)
def test_olympiadbench_by_its_own_judge(fields, output, expected):
    verdict = grading.grade(grading.Key(answer_type="olympiadbench", **fields), output)
    assert verdict.correct is expected, verdict


def test_grade_many_in_parallel_matches_serial():
    items = [(grading.Key(g, "math"), o) for g, o, _ in EQUIVALENCES] * 3
    serial = judge.grade_many(items, workers=1, progress=False)
    parallel = judge.grade_many(items, workers=2, progress=False)
    assert serial == parallel
    assert [v["committed"].correct for v in serial[:len(EQUIVALENCES)]] == [e for _, _, e in EQUIVALENCES]
    assert {tuple(v) for v in serial} == {judge.GRADERS}


def test_a_pathological_answer_is_bounded_by_the_timeout():
    # A huge power tower makes sympy's simplification run for a very long time.
    output = "\\boxed{" + "^".join(["9"] * 12) + " - " + "^".join(["9"] * 12) + " + 1}"
    start = time.perf_counter()
    verdict = grading.grade_math("1", output, timeout_s=1)
    assert time.perf_counter() - start < 3 * 1 + 2
    assert verdict.reason in ("timeout", "correct", "wrong")
