import pytest

from cgd.grading import answers


@pytest.mark.parametrize("text, expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\fbox{42}", "42"),
    ("\\boxed {7}", "7"),
    ("\\boxed{unbalanced", None),
    ("no box here", None),
])
def test_last_boxed(text, expected):
    assert answers.last_boxed(text) == expected


def test_gsm8k_answer_strips_separators():
    assert answers.gsm8k_answer("a\nb\n#### 1,234") == "1234"
    assert answers.gsm8k_answer("no marker") is None


@pytest.mark.parametrize("text, expected", [
    ("7 + 4 = 11.\nThe answer is: 11", "11"),
    ("so x = 4. The answer is 4.", "4"),
    ("The final answer is $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("The answer is: ", None),
    ("The answer is 4.\nBut then more text follows.", None),
])
def test_answer_is(text, expected):
    assert answers.answer_is(text) == expected


def test_reference_answer_prefers_boxed():
    assert answers.reference_answer("The answer is 3, i.e. \\boxed{3}.\nThe answer is: 3") == "3"


def test_calculator_annotations_removed():
    assert answers.strip_gsm8k_calculator("48/2 = <<48/2=24>>24") == "48/2 = 24"
