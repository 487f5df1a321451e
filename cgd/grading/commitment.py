"""What an output commits to as its final answer, under our rule: a statement of the answer, never
the last expression on the page.

The evaluation prompts ask for the answer in \\boxed{} (Qwen2.5-Math CoT, cgd.distill.prompts), and
the benchmarks' own conventions add three more ways of stating one:
  boxed        \\boxed{X} or \\fbox{X}                          (MATH, Qwen2.5-Math, DeepSeek-Math)
  hashes       a "#### X" line                                  (GSM8K's reference solutions)
  answer_is    "the (final) answer is X", "the solution (to ...) is X", to the sentence's end
               (MetaMathQA; Minerva's "The final answer is $X$. I hope it is correct.")
  answer_line  a line opening "Answer: X" / "Final answer: X"   (MMLU-style answer lines)
An output may state an answer, reconsider and state another: the last statement counts, by where it
starts in the text. An output with none of them (a restated question, a derivation cut off at the
token limit, a loop) commits to nothing and grades wrong with the reason `no_final_answer`, however
equal to the gold the last expression in it may be: math-verify proves an unsimplified expression
equal to its simplification, so a model that copies the question's expression would otherwise earn
credit for an answer it never gave (issue 39 found 3 of the CPU demo's 6 MATH-500 credits that way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cgd.grading import answers

# "#### 72" answers; "#### Step 2: ..." is a Markdown heading (a word of two letters or more first)
_HASHES = re.compile(r"^[ \t]*####[ \t]*(?![A-Za-z]{2,}\b)(\S[^\n]*?)[ \t]*$", re.MULTILINE)
# "The answer is X" / "So the final answer is X" / "the solution to the equation is X": the answer
# itself ("the", "my", "our", or a sentence's start), not someone else's ("the student's answer is
# wrong" is a critique), and not a verdict on one ("the solution is incorrect"). The statement runs to
# its sentence's end (a full stop before a space or the line's end; "3.5" goes on), so that "The
# answer is 5. Wait ... The answer is 7." holds two statements.
_ANSWER_IS = re.compile(
    r"(?:\b(?:the|my|our)\s+|^[ \t>*_#]*|(?<=[.!?:])[ \t]+)(?:final\s+)?(?:answer|solution)"
    r"(?:\s+to\s+[^.\n]{1,80}?)?\s+is\s*:?[ \t]*"
    r"(?![ \t]*(?:not|correct|incorrect|wrong|right|flawed|valid|invalid|accurate|inaccurate|partially)\b)"
    r"([^\n]*?)(?:\.(?=\s)|$)", re.IGNORECASE | re.MULTILINE)
_ANSWER_LINE = re.compile(r"^[ \t>#*_]*(?:final[ \t]+)?answer[*_ \t]*[:：][*_ \t]*([^\n]*)",
                          re.IGNORECASE | re.MULTILINE)
# Minerva's closing formula, and what commonly trails an answer on its line
_HOPE = re.compile(r"\s*I hope it is correct\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Commitment:
    answer: str  # the stated answer as written (box content, or the rest of the statement's line)
    marker: str  # boxed | hashes | answer_is | answer_line
    start: int  # where the statement starts in the output


def _boxes(text: str) -> list[Commitment]:
    out = []
    for m in answers.BOX.finditer(text):
        content = answers.box_content(text, m.end())
        if content:
            out.append(Commitment(content, "boxed", m.start()))
    return out


def _statement(text: str) -> str:
    """The answer part of an "answer is" line: Minerva's closing formula and trailing full stops
    dropped; empty when the line ends at the marker."""
    return _HOPE.sub("", text).strip().rstrip(".").strip()


def commitments(output: str) -> list[Commitment]:
    """Every statement of a final answer in the output, in order of position."""
    text = output or ""
    found = _boxes(text)
    found += [Commitment(m.group(1), "hashes", m.start()) for m in _HASHES.finditer(text)]
    for pattern, marker in ((_ANSWER_IS, "answer_is"), (_ANSWER_LINE, "answer_line")):
        for m in pattern.finditer(text):
            stated = _statement(m.group(1))
            # "the final answer is \\boxed{5}": the box is the statement (it starts later and wins)
            if stated and not re.match(r"\$*\\(?:boxed|fbox)\b", stated):
                found.append(Commitment(stated, marker, m.start()))
    return sorted(found, key=lambda c: c.start)


def committed(output: str) -> Commitment | None:
    """The output's last statement of a final answer, or None when it commits to none."""
    found = commitments(output)
    return found[-1] if found else None


def committed_answer(output: str) -> str | None:
    c = committed(output)
    return None if c is None else c.answer
