"""The prompts of CGD data generation, versioned, in two sets (each stage's `prompt_set`).

A prompt is an optional system turn and a user-turn template (`Prompt`).

ours     Rollout: the student's CoT instruction as the system turn (Qwen2.5-Math CoT, built by
         `student_messages`, which training and evaluation share), the question as the user turn.
         Critique: one user turn asking for a step-by-step review ending in `Conclusion: right` or
         `Conclusion: wrong`, as in the CFT data and the paper's Appendix D. Refine: one user turn
         with the question, the student's answer and the critique, asking for a corrected, complete
         solution ending in the final answer.
authors  The authors' release as published (cgd/distill/authors_prompts.py, cited there): the
         question alone for the probe, a system turn and a labelled user turn for critique and refine.

Each stage may override its prompt from params (`<stage>.prompt_file`): a text file is the user
template (the stage's own system turn kept), a YAML/JSON file gives `user` and `system`. The version
recorded in every output row is then `custom:<sha256 prefix>`, so outputs made with different
prompts never mix; the built-in sets record `<stage>-v1` / `<stage>-authors-v1`.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from cgd.distill import authors_prompts

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

OURS = {"rollout": ROLLOUT, "critique": CRITIQUE, "refine": REFINE,
        "conclusion_followup": CONCLUSION_FOLLOWUP}
# System turns of our set: only the rollout has one (the student's CoT instruction).
OURS_SYSTEM = {"rollout": STUDENT_SYSTEM["math"]}
FIELDS = {
    "rollout": {"question"},
    "critique": {"question", "student_answer"},
    "refine": {"question", "student_answer", "critique"},
    "critique_quality": {"question", "student_answer", "critique"},  # the judge's rubric (cgd/evaluation/critique_quality.py)
    "conclusion_followup": {"question", "student_answer", "critique"},
}
PROMPT_SETS = ("ours", "authors")


@dataclass(frozen=True)
class Prompt:
    """One request's prompt: an optional system turn and a user turn, the user turn a template."""

    stage: str
    template: str
    version: str
    system: str | None = None  # the system turn, verbatim (no fields), or None for none

    def render(self, **fields: str) -> list[dict]:
        """The chat messages for one request: the system turn (when the prompt has one), then the user turn."""
        user = {"role": "user", "content": self.template.format(**fields)}
        return [{"role": "system", "content": self.system}, user] if self.system is not None else [user]


def builtin(stage: str, prompt_set: str = "ours") -> Prompt:
    """A stage's built-in prompt from `prompt_set`: ours (this module) or the authors' as released
    (cgd/distill/authors_prompts.py, cited there)."""
    if prompt_set == "authors":
        if stage not in authors_prompts.USER:
            raise ValueError(f"the authors' release has no {stage} prompt; use prompt_set: ours for it")
        return Prompt(stage, authors_prompts.USER[stage], f"{stage}-authors-{authors_prompts.VERSION}",
                      authors_prompts.SYSTEM.get(stage))
    if prompt_set != "ours":
        raise ValueError(f"prompt set {prompt_set!r} is unknown; expected one of {', '.join(PROMPT_SETS)}")
    return Prompt(stage, OURS[stage], f"{stage}-{VERSIONS.get(stage, VERSION)}", OURS_SYSTEM.get(stage))


def _read_file(stage: str, prompt_file: str) -> tuple[str, str | None, str, str | None]:
    """(user template, system turn or None, the file's text) from a prompt file.

    A .yaml/.yml/.json file is a mapping with `user` (the template) and optionally `system` (a
    verbatim system turn; null or absent for none); any other file is the user template alone, and
    the stage's built-in system turn (ours) is kept."""
    text = Path(prompt_file).read_text(encoding="utf-8")
    if Path(prompt_file).suffix.lower() not in (".yaml", ".yml", ".json"):
        return text, OURS_SYSTEM.get(stage), text, None
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("user"), str) or set(doc) - {"system", "user", "version"}:
        raise ValueError(f"{stage}.prompt_file {prompt_file} must be a mapping with a `user` template and "
                         f"optionally a `system` turn (string or null) and a `version`, and nothing else")
    system = doc.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"{stage}.prompt_file {prompt_file}: `system` must be a string or null")
    return doc["user"], system, text, None if doc.get("version") is None else str(doc["version"])


def load(stage: str, prompt_file: str | None = None, prompt_set: str = "ours") -> Prompt:
    """The stage's prompt: the built-in one of `prompt_set`, or the one in `prompt_file`."""
    if prompt_file is None:
        return builtin(stage, prompt_set)
    template, system, text, version = _read_file(stage, prompt_file)
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if used != FIELDS[stage]:
        raise ValueError(
            f"{stage}.prompt_file {prompt_file} uses fields {sorted(used)}; the {stage} prompt must "
            f"use exactly {sorted(FIELDS[stage])} (write literal braces as {{{{ }}}})")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Prompt(stage, template, version or f"custom:{digest}", system)
