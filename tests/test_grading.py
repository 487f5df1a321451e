"""The grader on tricky equivalences, multiple-choice extraction, and bounded timeouts."""

import time

import pytest

from cgd import grading

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
    # TheoremQA true/false
    ("True", "The answer is True.", True),
    ("False", "so it is \\boxed{\\text{True}}", False),
]


@pytest.mark.parametrize("gold,output,expected", EQUIVALENCES)
def test_equivalence_table(gold, output, expected):
    verdict = grading.grade_math(gold, output)
    assert verdict.correct is expected, verdict
    assert verdict.reason == ("correct" if expected else "wrong")
    assert verdict.extracted


def test_no_answer_is_recorded_as_such():
    verdict = grading.grade_math("12", "I am not sure how to solve this.")
    assert verdict == grading.Verdict(False, None, "no_answer")


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
    assert grading.grade("B", "choice", "\\boxed{B}", 4) == grading.Verdict(True, "B", "correct")
    assert grading.grade("B", "choice", "\\boxed{C}", 4) == grading.Verdict(False, "C", "wrong")
    assert grading.grade("B", "choice", "no idea", 4) == grading.Verdict(False, None, "no_answer")


def test_grade_many_in_parallel_matches_serial():
    items = [(g, "math", o, 0) for g, o, _ in EQUIVALENCES] * 3
    serial = grading.grade_many(items, workers=1, progress=False)
    parallel = grading.grade_many(items, workers=2, progress=False)
    assert serial == parallel
    assert [v.correct for v in serial[:len(EQUIVALENCES)]] == [e for _, _, e in EQUIVALENCES]


def test_a_pathological_answer_is_bounded_by_the_timeout():
    # A huge power tower makes sympy's simplification run for a very long time.
    output = "\\boxed{" + "^".join(["9"] * 12) + " - " + "^".join(["9"] * 12) + " + 1}"
    start = time.perf_counter()
    verdict = grading.grade_math("1", output, timeout_s=1)
    assert time.perf_counter() - start < 3 * 1 + 2
    assert verdict.reason in ("timeout", "correct", "wrong")
