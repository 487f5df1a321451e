"""The three prompts of CGD data generation, versioned.

Rollout asks the student for a step-by-step solution ending in \\boxed{} (Qwen2.5-Math CoT: the
instruction in a system turn, built by `student_messages`, which training and evaluation share).
Critique shows the teacher the question and the student's answer and asks for a step-by-step
review ending in `Conclusion: right` or `Conclusion: wrong`, as in the CFT data and the paper's
Appendix D. Refine shows the teacher the question, the student's answer and the critique and asks
for a corrected, complete solution ending in the final answer.

Each stage may override its template from params (`<stage>.prompt_file`); the version recorded in
every output row is then `custom:<sha256 prefix>` so outputs made with different prompts never mix.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

VERSION = "v1"
VERSIONS = {"rollout": "v2"}  # v2: the CoT instruction moved to the system turn (student_messages)

# The student's view of a question, in the Qwen2.5-Math CoT layout the paper's evaluation used: the
# instruction as a system turn, the question as the user turn. The rollout (y'), the SFT and
# Distilled-SFT records (x) and evaluation all build it with `student_messages`, so the student is
# trained on the layout it is tested on.
STUDENT_SYSTEM = {
    "math": "Please reason step by step, and put your final answer within \\boxed{}.",
    "choice": ("Please reason step by step, and put the letter of the correct option within "
               "\\boxed{}, for example \\boxed{A}."),
}


def student_messages(question: str, answer_type: str = "math") -> list[dict]:
    """The chat a student answers: the CoT instruction for the answer type, then the question."""
    system = STUDENT_SYSTEM["choice" if answer_type == "choice" else "math"]
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


# The rollout's user turn; a rollout.prompt_file may reword it, the system turn stays.
ROLLOUT = """{question}"""

CRITIQUE = """Please critique whether the following solution to the question is correct.

Question:
{question}

Solution:
{student_answer}

Review the solution step by step: check the reasoning and the arithmetic of each step, point out \
every error and explain why it is wrong, and say what the correct result is. End your critique \
with a last line that is exactly "Conclusion: right" if the solution's final answer is correct, \
or exactly "Conclusion: wrong" if it is not."""

REFINE = """Question:
{question}

A student's initial answer:
{student_answer}

A critique of that answer:
{critique}

Using the critique, write a complete and correct solution to the question. Reason step by step \
and put your final answer within \\boxed{{}}. Write the solution itself; do not refer to the \
student's answer or to the critique."""

# Asked only when a critique ends without a conclusion line and critique.conclusion_followup is
# set: small teachers (the CPU demo's 135M model) rarely write the line unprompted.
CONCLUSION_FOLLOWUP = """Question:
{question}

Solution:
{student_answer}

Critique of the solution:
{critique}

According to the critique, is the solution's final answer correct? Answer with one word: right \
or wrong."""

DEFAULTS = {"rollout": ROLLOUT, "critique": CRITIQUE, "refine": REFINE,
            "conclusion_followup": CONCLUSION_FOLLOWUP}
FIELDS = {
    "rollout": {"question"},
    "critique": {"question", "student_answer"},
    "refine": {"question", "student_answer", "critique"},
    "conclusion_followup": {"question", "student_answer", "critique"},
}


@dataclass(frozen=True)
class Prompt:
    stage: str
    template: str
    version: str

    def render(self, **fields: str) -> list[dict]:
        """The chat messages for one request: a single user turn, or the student's view (rollout)."""
        text = self.template.format(**fields)
        if self.stage == "rollout":
            return student_messages(text)
        return [{"role": "user", "content": text}]


def load(stage: str, prompt_file: str | None = None) -> Prompt:
    """The stage's prompt: the built-in one, or the template in `prompt_file`."""
    if prompt_file is None:
        return Prompt(stage, DEFAULTS[stage], f"{stage}-{VERSIONS.get(stage, VERSION)}")
    template = Path(prompt_file).read_text(encoding="utf-8")
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if used != FIELDS[stage]:
        raise ValueError(
            f"{stage}.prompt_file {prompt_file} uses fields {sorted(used)}; the {stage} prompt must "
            f"use exactly {sorted(FIELDS[stage])} (write literal braces as {{{{ }}}})")
    digest = hashlib.sha256(template.encode()).hexdigest()[:12]
    return Prompt(stage, template, f"custom:{digest}")
