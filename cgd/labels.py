"""Labels on generated text: the critique's conclusion and math-verify's verdict against gold."""

from __future__ import annotations

import re
from typing import Literal

from cgd import answers

Conclusion = Literal["right", "wrong", "missing"]

# "Conclusion: right", "Conclusion: **Wrong**.", "conclusion - incorrect"; the last one counts.
_CONCLUSION = re.compile(
    r"conclusion\s*[:\-]?\s*[*_`\"']*\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)


def conclusion(critique: str) -> Conclusion:
    matches = _CONCLUSION.findall(critique or "")
    if not matches:
        return "missing"
    return "right" if matches[-1].lower() in ("right", "correct") else "wrong"


def final_answer(text: str) -> str | None:
    """The answer a solution commits to: its last \\boxed{} or a closing 'The answer is X'."""
    return answers.last_boxed(text or "") or answers.answer_is(text or "")


def verify(gold: str | None, prediction: str, timeout_s: int = 5) -> bool | None:
    """math-verify's verdict, gold first; None when there is no gold answer to check against.

    A prediction with no extractable answer is simply incorrect (False).
    """
    if gold is None:
        return None
    from math_verify import parse
    from math_verify import verify as mv_verify

    answer = final_answer(prediction)
    if answer is None:
        return False
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout_s)
    pred_parsed = parse(f"${answer}$", parsing_timeout=timeout_s)
    if not gold_parsed or not pred_parsed:
        # Unparseable on either side: fall back to exact text match rather than guess.
        return _norm(gold) == _norm(answer)
    return bool(mv_verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s))


def _norm(text: str) -> str:
    return re.sub(r"\s+|\\[,;! ]|\$", "", text).rstrip(".")
