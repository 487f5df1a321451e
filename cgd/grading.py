"""Grading model outputs: math-verify for math answers, letter extraction for multiple choice.

Every graded sample records what was extracted, the verdict and why (`reason`):
  correct / wrong          the extracted answer was compared with gold
  no_answer                nothing answer-like could be extracted from the output
  timeout                  parsing or comparing ran past the per-sample limit (counted wrong)
  gold_unparsed            math-verify could not read the gold answer; exact text match decided

math-verify runs gold first (`verify(gold, prediction)`), as its documentation asks: the relation
is not symmetric (a gold "50\\%" accepts 0.5, not the reverse). Its timeouts use SIGALRM, so
grading runs in the main thread of this process or of worker processes (`grade_many`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from cgd import answers

Reason = Literal["correct", "wrong", "no_answer", "timeout", "gold_unparsed"]


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


_TRUTH = re.compile(r"\b(true|false)\b", re.IGNORECASE)


def grade_truth(gold: str, output: str) -> Verdict:
    """TheoremQA's true/false questions: math-verify reads "True" as a product of symbols, so
    take the output's final answer (boxed or "the answer is"), else its last true/false word."""
    from cgd.labels import final_answer

    stated = final_answer(output) or ""
    hits = _TRUTH.findall(stated) or _TRUTH.findall(output or "")
    if not hits:
        return Verdict(False, None, "no_answer")
    ok = hits[-1].lower() == gold.strip().lower()
    return Verdict(ok, hits[-1], "correct" if ok else "wrong")


def grade_math(gold: str, output: str, timeout_s: int = 5) -> Verdict:
    from math_verify import verify
    from math_verify.errors import TimeoutException

    if _norm(gold) in ("true", "false"):
        return grade_truth(_norm(gold), output)
    try:
        gold_parsed = _parse(f"${gold}$", timeout_s)
        # The answer is the last \boxed{} (math-verify would join several boxes into a set, so a
        # corrected "\boxed{7} ... \boxed{12}" would read as {7, 12}); without one, math-verify
        # looks for "the final answer is", then the last expression.
        boxed = answers.last_boxed(output or "")
        pred = _parse(f"$\\boxed{{{boxed}}}$" if boxed else output, timeout_s)
        if not pred:
            return Verdict(False, None, "no_answer")
        extracted = str(pred[-1])
        if len(pred) == 1:
            # math-verify leaves a boxed percentage ("\boxed{50\%}") as an unparsed string; read
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
        return Verdict(False, None, "wrong")
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
        return Verdict(False, None, "no_answer")
    ok = letter == gold.strip().upper()
    return Verdict(ok, letter, "correct" if ok else "wrong")


# ---------------------------------------------------------------- one entry point


def grade(gold: str, answer_type: str, output: str, n_options: int = 0, timeout_s: int = 5) -> Verdict:
    if answer_type == "choice":
        return grade_choice(gold, output, n_options)
    return grade_math(gold, output, timeout_s)


def _grade_item(item: tuple) -> dict:
    gold, answer_type, output, n_options, timeout_s = item
    return grade(gold, answer_type, output, n_options, timeout_s).to_dict()


def grade_many(items: list[tuple[str, str, str, int]], timeout_s: int = 5, workers: int = 1,
               progress: bool = True) -> list[Verdict]:
    """Grade (gold, answer_type, output, n_options) items, in order, over `workers` processes.

    Each sample is bounded by math-verify's own timeouts (parse gold, parse output, compare:
    at most 3 x timeout_s), which need a process's main thread; worker processes have one.
    """
    from tqdm import tqdm

    jobs = [(*item, timeout_s) for item in items]
    if workers <= 1 or len(jobs) < 64:
        results = [_grade_item(j) for j in tqdm(jobs, desc="grade", disable=not progress, mininterval=5)]
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_grade_item, jobs, chunksize=32), total=len(jobs),
                                desc="grade", disable=not progress, mininterval=5))
    return [Verdict(**r) for r in results]
