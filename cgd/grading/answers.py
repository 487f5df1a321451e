"""Final-answer extraction from reference solutions (gold side only; grading uses math-verify)."""

from __future__ import annotations

import re

BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "#### 752" ends GSM8K solutions; MetaMathQA's GSM-derived rows add a line "The answer is: 752" after it.
_GSM8K = re.compile(r"####[ \t]*([^\n]+?)[ \t]*(?:\n|$)")
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is:?\s*\$?([^\s:$].*?)\$?\s*\.?\s*$", re.S)


def box_content(text: str, start: int) -> str | None:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip() or None
    return None  # unbalanced: treat as no answer rather than guess


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), with nested braces balanced."""
    matches = list(BOX.finditer(text or ""))
    return box_content(text, matches[-1].end()) if matches else None


def all_boxed(text: str) -> list[str]:
    """Contents of every outermost \\boxed{...}, in order (a box inside a box is its content)."""
    out, end = [], 0
    for m in BOX.finditer(text or ""):
        if m.start() < end:
            continue
        content = box_content(text, m.end())
        if content is not None:
            out.append(content)
            end = m.end() + len(content)
    return out


def gsm8k_answer(solution: str) -> str | None:
    """GSM8K puts the final number after '####' (the last such line); drop thousands separators."""
    m = ([None] + list(_GSM8K.finditer(solution or "")))[-1]
    return m.group(1).replace(",", "").strip() or None if m else None


def answer_is(solution: str) -> str | None:
    """MetaMathQA and many WebInstruct answers end with 'The answer is: X'."""
    tail = (solution or "").strip().splitlines()[-1:] or [""]
    m = _ANSWER_IS.search(tail[0])
    return m.group(1).strip() or None if m else None


def reference_answer(solution: str) -> str | None:
    """The final answer of a reference solution in any of the formats above."""
    return last_boxed(solution) or gsm8k_answer(solution) or answer_is(solution)


def strip_gsm8k_calculator(solution: str) -> str:
    """GSM8K solutions carry calculator annotations <<48/2=24>>; readers and models never see them."""
    return re.sub(r"<<[^<>]*>>", "", solution)
