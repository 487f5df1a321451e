"""Labels on generated text: the verdict a critique concludes with (whether a solution is right is
cgd.grading.judge's question)."""

from __future__ import annotations

import re
from typing import Literal

Conclusion = Literal["right", "wrong", "missing"]

# The verdict a critique ends on. Teachers write it many ways: the prompt's "Conclusion: right",
# LLaMA-3.3's "**Conclusion**: wrong" or "### Conclusion\nThe student's answer is incorrect.",
# GPT-4o's (WebInstruct-CFT) "Conclusion: wrong [END]", s1.1's answer after its think block.
# Thinking is dropped and markdown stripped; a labelled verdict ("Conclusion", "Verdict", "Final
# judgment", ...) is read from the sentence after its label and the last one wins, so an earlier
# "the student's conclusion: correct in form" never outranks the final verdict. Without a label,
# the closing paragraphs' last sentence about the answer or solution decides.
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.IGNORECASE | re.DOTALL)
_ANSWER_MARK = re.compile(r"<\|im_start\|>\s*answer\b", re.IGNORECASE)
_THINK_MARK = re.compile(r"<\|im_start\|>\s*think\b", re.IGNORECASE)
_MARKDOWN = re.compile(r"\[END\]|[*_`#>|]+|\\text\{|\\boxed\{", re.IGNORECASE)
_LABEL = re.compile(r"\b(?:conclusion|verdict|judge?ment|assessment)\b[ \t]*[:\-\u2013\u2014=,]?",
                    re.IGNORECASE)
_VERDICT = re.compile(
    r"\b(?:(not|never|\w+n't|partially|partly)\s+(?:\w+\s+){0,2}?)?"
    r"(correct(?:ly)?|incorrect(?:ly)?|right|wrong(?:ly)?|true|false|valid|invalid|accurate|"
    r"inaccurate|flawed|erroneous|mistaken)\b"
    # attributive uses ("the correct answer is 18", "a right triangle") state no verdict
    r"(?!\s+(?:final\s+)?(?:answer|solution|value|result|total|number|approach|method|formula|"
    r"calculation|expression|triangle|angle|side|way|step|one|amount|count|option|choice)s?\b)",
    re.IGNORECASE)
_NEGATIVE = {"incorrect", "incorrectly", "wrong", "wrongly", "false", "invalid", "inaccurate",
             "flawed", "erroneous", "mistaken"}
_ABOUT_ANSWER = re.compile(r"\b(?:answer|solution|response|result|reasoning|work|student|it)\b",
                           re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s|\n")


def _visible(critique: str) -> str:
    """The critique without thinking (s1.1's answer part; <think> blocks) and markdown marks."""
    text = critique or ""
    parts = _ANSWER_MARK.split(text)
    if len(parts) == 1 and (think := _THINK_MARK.search(text)):
        text = text[:think.start()]  # still thinking when it stopped: no verdict yet
    text = _THINK.sub(" ", parts[-1] if len(parts) > 1 else text)
    return _MARKDOWN.sub(" ", text)


def _polarity(sentence: str) -> Conclusion | None:
    m = _VERDICT.search(sentence)
    if m is None:
        return None
    negative = m.group(2).lower() in _NEGATIVE
    if m.group(1):  # "not correct", "isn't right", "partially correct"
        negative = not negative if m.group(1).lower() not in ("partially", "partly") else True
    return "wrong" if negative else "right"


def _first_sentence(text: str) -> str:
    text = text.lstrip(" \t\n:-")
    end = _SENTENCE_END.search(text)
    return text[:end.start()] if end else text


def conclusion(critique: str) -> Conclusion:
    text = _visible(critique)
    labelled = [_polarity(_first_sentence(text[m.end():m.end() + 300])) for m in _LABEL.finditer(text)]
    labelled = [v for v in labelled if v is not None]
    if labelled:
        return labelled[-1]
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    for paragraph in reversed(paragraphs[-2:]):
        for sentence in reversed(re.split(r"(?<=[.!?])\s+|\n", paragraph)):
            if _ABOUT_ANSWER.search(sentence) and (verdict := _polarity(sentence)):
                return verdict
    return "missing"
