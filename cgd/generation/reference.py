"""reference backend: a deterministic oracle for tests and ablations. It critiques by checking the
student's final answer against gold and refines with the reference solution."""

from __future__ import annotations

import re

from cgd.config import GenerationConfig
from cgd.generation.base import Backend, Completion, Request
from cgd.grading.commitment import committed_answer
from cgd.grading.judge import is_correct


class ReferenceBackend(Backend):
    """Critique = compare the student's final answer with gold; refine = the reference solution."""

    name = "reference"

    def __init__(self, stage: str):
        if stage not in ("critique", "refine"):
            raise ValueError(f"the reference backend critiques and refines; it cannot do {stage}")
        self.stage = stage

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        return [self._critique(r.row) if self.stage == "critique" else self._refine(r.row)
                for r in requests]

    @staticmethod
    def _critique(row: dict) -> Completion:
        gold, student = row.get("reference_answer"), row.get("student_answer", "")
        stated = committed_answer(student)
        if gold is None:
            return Completion("There is no reference answer to check this solution against.", "stop")
        if stated is None:
            verdict, text = "wrong", "The solution never states a final answer."
        elif is_correct(gold, student):
            verdict, text = "right", f"The final answer {stated} agrees with the reference answer {gold}."
        else:
            verdict, text = "wrong", f"The final answer {stated} disagrees with the reference answer {gold}."
        return Completion(f"{text}\n\nConclusion: {verdict}", "stop")

    @staticmethod
    def _refine(row: dict) -> Completion:
        text, gold = row["reference_solution"], row.get("reference_answer")
        if gold is not None and "\\boxed" not in text:
            # End in the \boxed{} form the rollout prompt asks for (GSM8K's "#### 72" line goes).
            text = re.sub(r"\n?####\s*\S.*$", "", text.rstrip())
            text += f"\n\nThe final answer is $\\boxed{{{gold}}}$."
        return Completion(text, "stop")
