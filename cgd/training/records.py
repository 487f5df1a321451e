"""Training records for the five methods (paper Sections 3.2 and 4.1.2), one builder per method.

Every record is a conversational prompt-completion pair, the format TRL's SFTTrainer trains with a
completion-only loss: the prompt tokens are masked out, the completion tokens are learned.

    sft              x            -> gold solution
    distilled_sft    x            -> refined answer y-hat
    cft              (x, y')      -> critique c           (the critique prompt the teacher saw)
    cgd              (x, y', c)   -> refined answer y-hat  (Appendix D layout, or the release's Alpaca record)
    cgd_no_critique  (x, y')      -> refined answer y-hat

`train.record_layout` lays out CGD's user turn. appendix_d: the paper's Appendix D sample alone.
alpaca: what the authors trained. Their refine step writes an Alpaca triple (`instruction` = the
release's refine instruction, `input` = the Appendix D layout, `output` = y-hat; src/cgd_pipeline.py)
and LLaMA-Factory's `AlpacaDatasetConverter` turns it into one user turn, instruction and input
joined by a newline (each only when non-empty), with no system turn (`_system` is "" unless the
dataset names a system column; the release's dataset_info.json entry names none). CGD w/o critique
keeps the same instruction under alpaca, so the ablation still differs from CGD only in the critique.

All methods train on the same rows (status ok and in the mixture from stage 04), so their
comparison differs only in what the student conditions on and what it learns to write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from cgd.distill import authors_prompts, prompts
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
RECORD_LAYOUTS = ("appendix_d", "alpaca")


def alpaca_user_turn(instruction: str, input_text: str) -> str:
    """LLaMA-Factory's Alpaca converter: the non-empty of instruction and input, joined by a newline."""
    return "\n".join(part for part in (instruction, input_text) if part)


def _alpaca(template: str) -> str:
    """A format template for the user turn LLaMA-Factory builds from the release's triple."""
    return alpaca_user_turn(authors_prompts.RECORD_INSTRUCTION.replace("{", "{{").replace("}", "}}"), template)


@dataclass(frozen=True)
class Templates:
    question: prompts.Prompt  # x as the student saw it in the rollout (and sees it at inference)
    critique: prompts.Prompt  # CFT's input: the critique request the teacher answered
    cgd: prompts.Prompt
    cgd_no_critique: prompts.Prompt


def templates(rollout=None, critique=None, record_layout: str = "appendix_d") -> Templates:
    """The prompts the data stages used (`rollout`, `critique`: their params sections, or None for
    the defaults), so x and (x, y') read as they did there, and CGD's layout `record_layout`."""
    def stage(name, cfg):
        return prompts.load(name, cfg.prompt_file, cfg.prompt_set) if cfg is not None else prompts.load(name)

    if record_layout == "alpaca":
        cgd_t, no_crit = _alpaca(CGD_TEMPLATE), _alpaca(CGD_NO_CRITIQUE_TEMPLATE)
        version = f"alpaca-authors-{authors_prompts.VERSION}-{LAYOUT_VERSION}"
    elif record_layout == "appendix_d":
        cgd_t, no_crit, version = CGD_TEMPLATE, CGD_NO_CRITIQUE_TEMPLATE, LAYOUT_VERSION
    else:
        raise ValueError(f"train.record_layout {record_layout!r} is unknown; expected one of {RECORD_LAYOUTS}")
    return Templates(stage("rollout", rollout), stage("critique", critique),
                     prompts.Prompt("cgd", cgd_t, f"cgd-{version}"),
                     prompts.Prompt("cgd_no_critique", no_crit, f"cgd_no_critique-{version}"))


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
