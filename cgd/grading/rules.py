"""Our grading rule: credit for the answer an output commits to (cgd.grading.commitment), judged by
each benchmark's own conventions.

- math / number (MATH-500, Minerva, GSM8K, AMC23, AIME): math-verify, gold first, on the committed
  answer.
- choice (GPQA, MMLU-Pro): the option letter the output commits to.
- theoremqa: TheoremQA's released grader (TIGER-AI-Lab/TheoremQA, utils.py
  `compare_answer_with_groundtruth` and number_utils.py): an integer gold accepts a prediction that
  rounds to it, a float gold one within a relative tolerance (`within_eps`: 4% of |gold|;
  `eval.theoremqa_rel_tol`), a list gold a list of the same length compared element by element after
  sorting both, a bool gold the true/false (yes/no) the committed answer states, an option gold "(c)"
  the same letter.
- olympiadbench: OlympiadBench's own judge (OpenBMB/OlympiadBench, eval/auto_scoring_judge.py and
  inference/judge.py): "$", "%", "^\\circ" and the row's unit dropped, several answers split on
  top-level commas and matched as a set (± expanded), tuples and intervals element by element, a number
  equal within the row's absolute tolerance (its `error` field, default 1e-8, also reading the gold as
  a percentage or a fraction of 100), otherwise symbolic equality (math-verify in place of its
  sympy/antlr parse).

Every graded sample records what was extracted, the verdict and why (`reason`):
  correct / wrong          the committed answer was compared with gold
  no_final_answer          the output states no final answer (cgd.grading.commitment): wrong
  timeout                  parsing or comparing ran past the per-sample limit (counted wrong)
  gold_unparsed            math-verify could not read the gold answer; exact text match decided

math-verify runs gold first (`verify(gold, prediction)`), as its documentation asks: the relation
is not symmetric (a gold "50\\%" accepts 0.5, not the reverse). Its timeouts use SIGALRM, so
grading runs in the main thread of this process or of worker processes (cgd.grading.judge).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Literal

from cgd.grading import answers
from cgd.grading.commitment import Commitment, committed, committed_answer

Reason = Literal["correct", "wrong", "no_final_answer", "timeout", "gold_unparsed", "random_guess"]


@dataclass(frozen=True)
class Key:
    """What an output is graded against: the gold answer and what its benchmark's rule needs."""

    gold: str
    answer_type: str = "math"  # math | number | choice | theoremqa | olympiadbench
    n_options: int = 0  # choice: options lettered A..
    kind: str = ""  # the benchmark's own answer type: TheoremQA's Answer_type, OlympiadBench's answer_type
    tolerance: tuple[float, ...] = ()  # olympiadbench: absolute tolerance per answer (its `error`)
    unit: str = ""  # olympiadbench: the unit the question asks in, dropped from the answer
    multiple: bool = False  # olympiadbench: several answers (every \\boxed{} of the output counts)
    benchmark: str = ""  # the benchmark's name (cgd.data.benchmarks); the harness rule reads by it


@dataclass(frozen=True)
class Rules:
    """Grading settings from params (eval.grading_timeout_s, eval.theoremqa_rel_tol)."""

    timeout_s: int = 5
    theoremqa_rel_tol: float = 0.04


@dataclass(frozen=True)
class Verdict:
    correct: bool
    extracted: str | None
    reason: Reason

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- math

_PERCENT = re.compile(r"^(.*?\d)\s*\\?%$")


def _parse(text: str, timeout_s: int):
    from math_verify import parse

    return parse(text, parsing_timeout=timeout_s, raise_on_error=True)


_UNIT_WORDS = re.compile(r"(?<=[\d}])\s*[A-Za-z][A-Za-z ]*$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def _parse_committed(c: Commitment, timeout_s: int):
    """math-verify's reading of a committed answer. A box is read as a box; a stated line ("the
    answer is $12$ apples", "#### 1,000") in math mode where it has one, else as the expression it
    is, without thousands separators and trailing unit words."""
    if c.marker == "boxed":
        return _parse(f"$\\boxed{{{c.answer}}}$", timeout_s)
    text = c.answer.replace("\\$", "").strip()
    if "$" in text or "\\(" in text or "\\[" in text:
        return _parse(text, timeout_s)
    text = _UNIT_WORDS.sub("", text).strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    return _parse(f"$\\boxed{{{text}}}$", timeout_s)


def grade_math(gold: str, output: str, timeout_s: int = 5) -> Verdict:
    from math_verify import verify
    from math_verify.errors import TimeoutException

    stated = committed(output or "")
    if stated is None:
        return Verdict(False, None, "no_final_answer")
    try:
        gold_parsed = _parse(f"${gold}$", timeout_s)
        # Only the last statement is read (math-verify would join several boxes into a set, so a
        # corrected "\\boxed{7} ... \\boxed{12}" would read as {7, 12}).
        pred = _parse_committed(stated, timeout_s)
        if not pred:
            return Verdict(False, stated.answer, "wrong")
        extracted = str(pred[-1])
        if len(pred) == 1:
            # math-verify leaves a boxed percentage ("\\boxed{50\\%}") as an unparsed string; read
            # the number without the sign, which a gold "50" (a question asking "what percent")
            # accepts and a gold "0.5" does not.
            m = _PERCENT.match(extracted)
            if m:
                pred = _parse(f"${m.group(1)}$", timeout_s) or pred
        if len(gold_parsed) < 2:
            return Verdict(_norm(gold) == _norm(extracted), extracted, "gold_unparsed")
        ok = verify(gold_parsed, pred, timeout_seconds=timeout_s, raise_on_error=True)
    except TimeoutException:
        return Verdict(False, None, "timeout")
    except Exception:  # noqa: BLE001 - a sympy failure on odd input is a wrong answer, not a crash
        return Verdict(False, stated.answer, "wrong")
    return Verdict(bool(ok), extracted, "correct" if ok else "wrong")


def _norm(text: str) -> str:
    return re.sub(r"\s+|\\[,;! ]|\$|\\text\{|\}|\{", "", text).rstrip(".").lower()


# ---------------------------------------------------------------- multiple choice

_BOXED_LETTER = re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?([A-J])\)?\s*\}?\s*\}")
_ANSWER_LETTER = re.compile(
    r"(?:answer|choice|option)\s*(?:is|:)?\s*(?:option\s*)?[:\s]*\**\s*\(?([A-J])\)?(?![A-Za-z])",
    re.IGNORECASE)
_LONE_LETTER = re.compile(r"^\s*\**\(?([A-J])\)?[.:]?\**\s*$", re.MULTILINE)


def extract_choice(output: str, n_options: int) -> str | None:
    """The option letter an output commits to: its last \\boxed{X}, else its last "answer is
    (X)" / "Answer: X", else a line holding only a letter. Letters beyond the options don't count."""
    valid = set("ABCDEFGHIJ"[:n_options])
    for pattern in (_BOXED_LETTER, _ANSWER_LETTER, _LONE_LETTER):
        hits = [m.group(1).upper() for m in pattern.finditer(output or "")]
        hits = [h for h in hits if h in valid]
        if hits:
            return hits[-1]
    return None


def grade_choice(gold: str, output: str, n_options: int) -> Verdict:
    letter = extract_choice(output, n_options)
    if letter is None:
        return Verdict(False, None, "no_final_answer")
    ok = letter == gold.strip().upper()
    return Verdict(ok, letter, "correct" if ok else "wrong")


# ---------------------------------------------------------------- numbers (TheoremQA, OlympiadBench)

_TEXT_BLOCK = re.compile(r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{[^{}]*\}")
_LATEX_SPACE = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_TRAILING_WORDS = re.compile(r"(?<=[\d.})])\s*[A-Za-z][A-Za-z/ ^\-\d]*$")
_SCI = re.compile(r"^(-?\d*\.?\d+)\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*(-?\d+)\s*\}?$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def _strip_number_text(text: str) -> tuple[str, bool]:
    """An answer's text reduced to the quantity: after its last '=' or '\\approx', without '$',
    units in \\text{}/\\mathrm{}, degree signs, LaTeX spacing, thousands separators and trailing unit
    words; and whether it was a percentage."""
    t = (text or "").replace("$", "").strip()
    t = re.split(r"=|\\approx|\\simeq|≈", t)[-1]
    t = _TEXT_BLOCK.sub(" ", t)
    t = _DEGREE.sub("", t)
    t = _LATEX_SPACE.sub("", t).replace("\\left", "").replace("\\right", "").replace("\\!", "")
    t = t.replace("{,}", "").strip().rstrip(".").strip()
    percent = bool(re.search(r"\\?%\s*$", t))
    t = re.sub(r"\\?%\s*$", "", t).strip()
    if not _NUMBER.match(t):  # "4e-05" is a number, not 4 with a unit "e-05"
        t = _TRAILING_WORDS.sub("", t).strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", t):
        t = t.replace(",", "")
    return t, percent


def to_number(text: str, timeout_s: int = 5) -> float | None:
    """The number an answer states (plain, scientific, or any LaTeX math-verify evaluates: \\frac,
    \\sqrt, \\pi, powers), or None. A percentage is returned as written (50% -> 50.0)."""
    t, _ = _strip_number_text(text)
    if not t:
        return None
    if _NUMBER.match(t):
        return float(t)
    m = _SCI.match(t)
    if m:
        return float(m.group(1)) * 10 ** int(m.group(2))
    try:
        parsed = _parse(f"${t}$", timeout_s)
    except Exception:  # noqa: BLE001 - unreadable text is no number
        return None
    for value in parsed:
        try:
            number = complex(value.evalf()) if hasattr(value, "evalf") else None
        except Exception:  # noqa: BLE001
            number = None
        if number is not None and abs(number.imag) < 1e-12:
            return float(number.real)
    return None


def _readings(text: str, timeout_s: int) -> list[float]:
    """The values an answer may mean: as written, and as a fraction when written as a percentage."""
    value = to_number(text, timeout_s)
    if value is None:
        return []
    return [value, value / 100] if _strip_number_text(text)[1] else [value]


def split_top_level(text: str) -> list[str]:
    """Items of a comma list, splitting only outside brackets and braces: "(1,2), 3" -> ["(1,2)", "3"]."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return [x for x in items if x]


# ---------------------------------------------------------------- TheoremQA

_BOOL_WORD = re.compile(r"\b(true|false|yes|no)\b", re.IGNORECASE)
_OPTION = re.compile(r"^\(?([a-j])\)?$", re.IGNORECASE)
_BRACKETS = re.compile(r"^(?:\\left)?\s*(?:\[|\(|\\\{|\\langle)(.*?)(?:\\right)?\s*(?:\]|\)|\\\}|\\rangle)$", re.S)


def _theoremqa_number_ok(pred: float, gold: float, integer: bool, rel_tol: float) -> bool:
    if math.isnan(pred):
        return False
    if integer:
        return round(pred) == round(gold)
    return abs(pred - gold) <= rel_tol * abs(gold)


def _list_items(text: str) -> list[str]:
    t = (text or "").replace("$", "").strip()
    m = _BRACKETS.match(t)
    return split_top_level(m.group(1) if m else t)


def grade_theoremqa(key: Key, output: str, rules: Rules) -> Verdict:
    kind = key.kind
    if kind == "bool":
        stated = committed_answer(output or "")
        if stated is None:
            return Verdict(False, None, "no_final_answer")
        hits = _BOOL_WORD.findall(_TEXT_BLOCK.sub(lambda m: m.group(0)[m.group(0).index("{") + 1:-1], stated))
        if not hits:
            return Verdict(False, stated, "wrong")
        said = "true" if hits[-1].lower() in ("true", "yes") else "false"
        ok = said == key.gold.strip().lower()
        return Verdict(ok, hits[-1], "correct" if ok else "wrong")
    stated = committed_answer(output or "")
    if stated is None:
        return Verdict(False, None, "no_final_answer")
    if kind == "option":
        letter = _OPTION.match(re.sub(r"\\text(?:bf)?\s*\{([^{}]*)\}", r"\1", stated).replace(" ", ""))
        gold = _OPTION.match(key.gold.strip())
        ok = bool(letter and gold and letter.group(1).lower() == gold.group(1).lower()) or (
            key.gold.strip().lower() in stated.lower())
        return Verdict(ok, stated, "correct" if ok else "wrong")
    if kind.startswith("list"):
        golds = [float(x) for x in _list_items(key.gold)]
        preds = [to_number(x, rules.timeout_s) for x in _list_items(stated)]
        ok = (len(preds) == len(golds) and all(p is not None for p in preds)
              and all(_theoremqa_number_ok(p, g, kind == "list of integer", rules.theoremqa_rel_tol)
                      for p, g in zip(sorted(preds), sorted(golds))))
        return Verdict(ok, stated, "correct" if ok else "wrong")
    gold = float(key.gold)
    readings = _readings(stated, rules.timeout_s)
    if not readings:
        return Verdict(False, stated, "wrong")
    ok = any(_theoremqa_number_ok(p, gold, kind == "integer", rules.theoremqa_rel_tol) for p in readings)
    return Verdict(ok, stated, "correct" if ok else "wrong")


# ---------------------------------------------------------------- OlympiadBench

_OLYMPIAD_STRIP = "\n$,.:;^_=+`!@#%&*~，。 "


def olympiad_normalize(text: str, unit: str = "") -> str:
    """OlympiadBench's preprocessing of an answer: "$" and "%" removed, \\left/\\right, degree marks
    and the unit dropped, \\mathrm{}/\\mathbf{} unwrapped, "\\in " prefixes cut, stray punctuation
    stripped from both ends."""
    t = text or ""
    if "\\in " in t:
        t = t.split("\\in ", 1)[1]
    for a, b in (("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","), ("$", ""), ("\\approx", "="),
                 ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"), ("^{\\circ}", ""),
                 ("^\\circ", ""), ("\\%", ""), ("%", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac")):
        t = t.replace(a, b)
    t = re.sub(r"\\(?:mathrm|mathbf|text)\{~?([^}]*)\}", r"\1", t)
    if unit:
        # the unit as the row writes it ("^{\\circ}") and as normalized (""), whichever the answer ends in
        for u in {unit.strip(), olympiad_normalize(unit)} - {""}:
            if t.rstrip().endswith(u):
                t = t.rstrip()[: -len(u)]
    return t.strip(_OLYMPIAD_STRIP)


def _olympiad_item_equal(gold: str, pred: str, tolerance: float, timeout_s: int) -> bool:
    from math_verify import verify

    if gold == pred and gold:
        return True
    g_br, p_br = _BRACKETS.match(gold), _BRACKETS.match(pred)
    if g_br and p_br and "," in gold:
        # tuples and intervals: same brackets, the same items in order
        if (gold[0], gold[-1]) != (pred[0], pred[-1]):
            return False
        gi, pi = split_top_level(g_br.group(1)), split_top_level(p_br.group(1))
        return len(gi) == len(pi) and all(_olympiad_item_equal(a, b, tolerance, timeout_s) for a, b in zip(gi, pi))
    g_num, p_num = to_number(gold, timeout_s), to_number(pred, timeout_s)
    # Floats are exact enough below 1e12; above it (2^{1009}, 100!/2^{50}) a difference of 1 vanishes
    # in the rounding, so equality is left to math-verify's exact comparison.
    if g_num is not None and p_num is not None and "=" not in gold and max(abs(g_num), abs(p_num)) < 1e12:
        if any(abs(g - p_num) <= tolerance * 1.01 for g in (g_num / 100, g_num, g_num * 100)):
            return True
        if _NUMBER.match(gold.strip()) and _NUMBER.match(pred.strip()):
            return False
    try:
        return bool(verify(_parse(f"${gold}$", timeout_s), _parse(f"${pred}$", timeout_s),
                           timeout_seconds=timeout_s, raise_on_error=True))
    except Exception:  # noqa: BLE001 - unreadable on either side: not equal
        return False


def _plus_minus(items: list[str]) -> list[str]:
    out = []
    for item in items:
        out += [item.replace("\\pm", "+"), item.replace("\\pm", "-")] if "\\pm" in item else [item]
    return out


def grade_olympiadbench(key: Key, output: str, rules: Rules) -> Verdict:
    boxes = answers.all_boxed(output or "")
    if key.multiple and boxes:
        stated = ", ".join(boxes)
    else:
        stated = committed_answer(output or "")
    if stated is None:
        return Verdict(False, None, "no_final_answer")
    gold = olympiad_normalize(key.gold, key.unit)
    pred = olympiad_normalize(stated, key.unit)
    if gold == pred:
        return Verdict(True, stated, "correct")
    golds, preds = _plus_minus(split_top_level(gold)), _plus_minus(split_top_level(pred))
    tolerances = list(key.tolerance) or [1e-8]
    tolerances = tolerances * len(golds) if len(tolerances) == 1 else tolerances
    ok = len(golds) == len(preds)
    if ok:
        left = list(preds)
        for g, tol in zip(golds, tolerances + [1e-8] * (len(golds) - len(tolerances))):
            match = next((p for p in left if _olympiad_item_equal(g, p, tol, rules.timeout_s)), None)
            if match is None:
                ok = False
                break
            left.remove(match)
    return Verdict(ok, stated, "correct" if ok else "wrong")


# ---------------------------------------------------------------- one entry point


def grade(key: Key, output: str, rules: Rules = Rules()) -> Verdict:
    """The verdict on `output` under our rule for the key's benchmark (callers go through
    cgd.grading.judge, which also records the authors' rule)."""
    if key.answer_type == "choice":
        return grade_choice(key.gold, output, key.n_options)
    try:
        if key.answer_type == "theoremqa":
            return grade_theoremqa(key, output, rules)
        if key.answer_type == "olympiadbench":
            return grade_olympiadbench(key, output, rules)
    except Exception as e:  # noqa: BLE001 - a sympy failure on odd input is a wrong answer, not a crash
        from math_verify.errors import TimeoutException

        return Verdict(False, None, "timeout" if isinstance(e, TimeoutException) else "wrong")
    return grade_math(key.gold, output, rules.timeout_s)
