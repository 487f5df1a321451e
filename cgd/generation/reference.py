"""reference backend: a deterministic oracle for tests and ablations. It critiques by checking the
student's final answer against gold, refines with the reference solution, and scores a critique
(stage critique_quality) by how much it says and how many of the answer's numbers it cites."""

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
        if stage not in ("critique", "refine", "critique_quality"):
            raise ValueError(f"the reference backend critiques, refines and scores critiques; it cannot do {stage}")
        self.stage = stage

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        act = {"critique": self._critique, "refine": self._refine, "critique_quality": self._score}[self.stage]
        return [act(r.row) for r in requests]

    @staticmethod
    def _score(row: dict) -> Completion:
        """Informativeness by the critique's length (1 under 3 words .. 5 from 20), specificity by
        the numbers of the student's answer it cites (1 + 2 each, at most 5)."""
        critique, answer = row.get("critique", ""), row.get("student_answer", "")
        n_words = len(critique.split())
        informativeness = 1 + sum(n_words >= t for t in (3, 8, 14, 20))
        cited = set(re.findall(r"\d+(?:\.\d+)?", critique)) & set(re.findall(r"\d+(?:\.\d+)?", answer))
        specificity = min(5, 1 + 2 * len(cited))
        return Completion(f"Informativeness: {informativeness}\nSpecificity: {specificity}", "stop")

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
