"""Training records for the five methods (paper Sections 3.2 and 4.1.2), one builder per method.

Every record is a conversational prompt-completion pair, the format TRL's SFTTrainer trains with a
completion-only loss: the prompt tokens are masked out, the completion tokens are learned.

    sft              x            -> gold solution
    distilled_sft    x            -> refined answer y-hat
    cft              (x, y')      -> critique c           (the critique prompt the teacher saw)
    cgd              (x, y', c)   -> refined answer y-hat  (Appendix D layout)
    cgd_no_critique  (x, y')      -> refined answer y-hat

All methods train on the same rows (status ok and in the mixture from stage 04), so their
comparison differs only in what the student conditions on and what it learns to write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from cgd.distill import prompts
from cgd.distill.status import OK

# CGD's training input, laid out as the paper's Appendix D sample: the labelled question, the
# student's initial answer and the critique; the refined answer is the completion. Kept here, not
# in cgd/distill/prompts.py, so editing a training layout never invalidates the generated data.
CGD_TEMPLATE = """Question: {question}

Student's Initial Answer: {student_answer}

Critique: {critique}"""

CGD_NO_CRITIQUE_TEMPLATE = """Question: {question}

Student's Initial Answer: {student_answer}"""
LAYOUT_VERSION = "v1"


@dataclass(frozen=True)
class Templates:
    question: prompts.Prompt  # x as the student saw it in the rollout (and sees it at inference)
    critique: prompts.Prompt  # CFT's input: the critique request the teacher answered
    cgd: prompts.Prompt
    cgd_no_critique: prompts.Prompt


def templates(rollout_prompt_file: str | None = None,
              critique_prompt_file: str | None = None) -> Templates:
    """The same prompt files the data stages used, so x and (x, y') read as they did there."""
    return Templates(prompts.load("rollout", rollout_prompt_file),
                     prompts.load("critique", critique_prompt_file),
                     prompts.Prompt("cgd", CGD_TEMPLATE, f"cgd-{LAYOUT_VERSION}"),
                     prompts.Prompt("cgd_no_critique", CGD_NO_CRITIQUE_TEMPLATE,
                                    f"cgd_no_critique-{LAYOUT_VERSION}"))


def _record(row: dict, prompt: list[dict], completion: str) -> dict:
    return {"id": row["id"], "prompt": prompt,
            "completion": [{"role": "assistant", "content": completion}]}


def sft(row: dict, t: Templates) -> dict:
    return _record(row, t.question.render(question=row["question"]), row["reference_solution"])


def distilled_sft(row: dict, t: Templates) -> dict:
    return _record(row, t.question.render(question=row["question"]), row["refined_answer"])


def cft(row: dict, t: Templates) -> dict:
    prompt = t.critique.render(question=row["question"], student_answer=row["student_answer"])
    return _record(row, prompt, row["critique"])


def cgd(row: dict, t: Templates) -> dict:
    prompt = t.cgd.render(question=row["question"], student_answer=row["student_answer"],
                          critique=row["critique"])
    return _record(row, prompt, row["refined_answer"])


def cgd_no_critique(row: dict, t: Templates) -> dict:
    prompt = t.cgd_no_critique.render(question=row["question"], student_answer=row["student_answer"])
    return _record(row, prompt, row["refined_answer"])


BUILDERS: dict[str, Callable[[dict, Templates], dict]] = {
    "sft": sft, "distilled_sft": distilled_sft, "cft": cft, "cgd": cgd,
    "cgd_no_critique": cgd_no_critique,
    # CFT*: the same (x, y') -> c layout, on WebInstruct-CFT's rows (stage cft_data), c by GPT-4o
    "cft_gpt4o": cft,
}


def build(rows: list[dict], method: str, t: Templates) -> tuple[list[dict], dict]:
    """Records for `method` from stage-04 rows; every excluded row is counted by its reason."""
    excluded: Counter = Counter()
    records = []
    for row in rows:
        if row["status"] != OK:
            excluded[f"status {row['status']}"] += 1
        elif not row["in_mixture"]:
            excluded["not in mixture"] += 1
        else:
            records.append(BUILDERS[method](row, t))
    report = {"method": method, "rows": len(rows), "records": len(records),
              "excluded": dict(sorted(excluded.items()))}
    return records, report


def token_ids(record: dict, tokenizer) -> tuple[list[int], list[int]]:
    """(prompt ids, prompt + completion ids), tokenized as TRL's SFTTrainer does."""
    def ids(messages, **kwargs):
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
        return out["input_ids"]

    return (ids(record["prompt"], add_generation_prompt=True),
            ids(record["prompt"] + record["completion"]))


def token_lengths(record: dict, tokenizer) -> tuple[int, int]:
    """(prompt tokens, prompt + completion tokens)."""
    prompt, full = token_ids(record, tokenizer)
    return len(prompt), len(full)


def fit_length(records: list[dict], tokenizer, max_length: int, overlong: str) -> tuple[list[dict], dict]:
    """Apply `train.overlong` to records longer than `max_length`, counting every one.

    drop      the record is left out.
    truncate  the record is kept and TRL cuts the end of its completion; the report counts the
              records and the completion tokens lost.
    A record whose prompt alone fills max_length has nothing left to learn and is dropped under
    either policy (TRL would drop it without a word).
    """
    kept, lengths = [], []
    dropped_overlong = dropped_prompt = truncated = tokens_cut = 0
    for record in records:
        prompt_len, total = token_lengths(record, tokenizer)
        if prompt_len >= max_length:
            dropped_prompt += 1
            continue
        if total > max_length:
            if overlong == "drop":
                dropped_overlong += 1
                continue
            truncated += 1
            tokens_cut += total - max_length
        kept.append(record)
        lengths.append(min(total, max_length))
    report = {
        "max_length": max_length, "overlong": overlong, "kept": len(kept),
        "dropped_overlong": dropped_overlong, "dropped_prompt_fills_max_length": dropped_prompt,
        "truncated": truncated, "completion_tokens_cut": tokens_cut,
        "tokens": sum(lengths), "max_tokens": max(lengths, default=0),
        "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
    }
    return kept, report
