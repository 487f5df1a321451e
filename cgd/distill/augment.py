"""Stages 02-04: the critique-augmented dataset (paper Section 3.1, Algorithm 1).

02 rollout   the student answers each question: y' ~ S(. | x)
03 critique  the teacher reviews y' and concludes right or wrong: c ~ T(. | x, y')
04 refine    the teacher writes a corrected solution: y-hat ~ T(. | x, y', c); then the
             correct/incorrect mixture is drawn (paper Fig. 5)

Each stage maps its input rows to output rows with the same ids and order. A row whose generation
failed is kept with a status (empty, truncated, error, no_conclusion, or skipped when an earlier
stage failed), excluded from training downstream, and counted in the stage report.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from cgd import generation
from cgd.config import GenerationConfig, RefineConfig
from cgd.distill import prompts
from cgd.distill.status import OK, generation_status
from cgd.generation import Backend, Completion, Request, resolved_backend
from cgd.generation.driver import ShardRun, run_shards
from cgd.grading import labels
from cgd.grading.commitment import committed_answer
from cgd.grading.judge import is_correct
from cgd.runtime import shards

# ---------------------------------------------------------------- the three row builders


@dataclass(frozen=True)
class StageSpec:
    """What one stage asks for and how it folds the completion into the row.

    An optional follow-up asks a second, short question of rows that need it (after `apply`),
    within the same shard, so resuming stays exact.
    """

    name: str
    request: Callable[[dict], Request | None]  # None: the row is skipped (an earlier stage failed)
    apply: Callable[[dict, Completion | None], dict]
    followup: Callable[[dict], Request | None] | None = None
    apply_followup: Callable[[dict, Completion], dict] | None = None
    followup_gen: GenerationConfig | None = None


def answer_section(c: Completion | None, pattern: str | None) -> Completion | None:
    """The completion with its text cut to what follows the first match of `pattern` (`<role>.answer_after`,
    case-insensitive), ": " and spaces stripped; unchanged without a pattern or a match. The release
    reads every s1.1 generation so (src/cgd_pipeline.py `_parse_s1_1_response`)."""
    if c is None or pattern is None:
        return c
    parts = re.split(pattern, c.text, maxsplit=1, flags=re.IGNORECASE)
    return c if len(parts) < 2 else replace(c, text=parts[1].lstrip(": ").strip())


def rollout_spec(prompt: prompts.Prompt, answer_after: str | None = None) -> StageSpec:
    def request(row):
        return Request(row["id"], prompt.render(question=row["question"]), row)

    def apply(row, c):
        c = answer_section(c, answer_after)
        status = generation_status(c)
        return {**row, "rollout_prompt": prompt.version, "student_answer": c.text,
                "student_final_answer": committed_answer(c.text),
                "verifier_correct": is_correct(row["reference_answer"], c.text) if status == OK else None,
                "rollout_status": status, "rollout_finish_reason": c.finish_reason,
                "rollout_error": c.error, "rollout_tokens": c.completion_tokens}

    return StageSpec("rollout", request, apply)


def critique_spec(prompt: prompts.Prompt, followup_gen: GenerationConfig | None = None,
                  answer_after: str | None = None) -> StageSpec:
    """`followup_gen` set: critiques without a conclusion get the one-word follow-up question,
    answered by `Backend.choose` (a scored right/wrong choice with transformers; a few greedy
    tokens elsewhere)."""
    def request(row):
        if row["rollout_status"] != OK:
            return None
        return Request(row["id"], prompt.render(question=row["question"],
                                                student_answer=row["student_answer"]), row)

    def apply(row, c):
        c = answer_section(c, answer_after)
        if c is None:
            return {**row, "critique_prompt": prompt.version, "critique": "", "conclusion": "missing", "conclusion_source": None,
                    "critique_status": "skipped", "critique_finish_reason": None,
                    "critique_error": None, "critique_tokens": 0, "critique_agrees_with_verifier": None}
        status = generation_status(c)
        verdict = labels.conclusion(c.text)
        if status == OK and verdict == "missing":
            status = "no_conclusion"
        agrees = None
        if verdict != "missing" and row["verifier_correct"] is not None:
            agrees = (verdict == "right") == row["verifier_correct"]
        return {**row, "critique_prompt": prompt.version, "critique": c.text, "conclusion": verdict,
                "conclusion_source": "critique" if verdict != "missing" else None,
                "critique_status": status, "critique_finish_reason": c.finish_reason,
                "critique_error": c.error, "critique_tokens": c.completion_tokens,
                "critique_agrees_with_verifier": agrees}

    if followup_gen is None:
        return StageSpec("critique", request, apply)
    ask = prompts.load("conclusion_followup")

    def followup(row):
        if row["critique_status"] != "no_conclusion":
            return None
        return Request(row["id"], ask.render(question=row["question"], student_answer=row["student_answer"],
                                             critique=row["critique"]), row)

    def apply_followup(row, c):
        verdict = c.text if c.text in ("right", "wrong") else "missing"
        row = {**row, "conclusion_followup_reply": c.text}
        if verdict == "missing":
            return row
        agrees = None if row["verifier_correct"] is None else (verdict == "right") == row["verifier_correct"]
        return {**row, "critique": f"{row['critique']}\n\nConclusion: {verdict}", "conclusion": verdict,
                "conclusion_source": "followup", "critique_status": OK,
                "critique_agrees_with_verifier": agrees}

    return StageSpec("critique", request, apply, followup, apply_followup,
                     replace(followup_gen, max_new_tokens=8, temperature=0.0, top_p=1.0))


def refine_spec(prompt: prompts.Prompt, answer_after: str | None = None) -> StageSpec:
    def request(row):
        if row["critique_status"] != OK:
            return None
        return Request(row["id"], prompt.render(question=row["question"],
                                                student_answer=row["student_answer"],
                                                critique=row["critique"]), row)

    def apply(row, c):
        c = answer_section(c, answer_after)
        if c is None:
            out = {**row, "refine_prompt": prompt.version, "refined_answer": "", "refined_final_answer": None,
                   "refined_correct": None, "refine_status": "skipped", "refine_finish_reason": None,
                   "refine_error": None, "refine_tokens": 0}
        else:
            status = generation_status(c)
            out = {**row, "refine_prompt": prompt.version, "refined_answer": c.text,
                   "refined_final_answer": committed_answer(c.text),
                   "refined_correct": is_correct(row["reference_answer"], c.text) if status == OK else None,
                   "refine_status": status, "refine_finish_reason": c.finish_reason,
                   "refine_error": c.error, "refine_tokens": c.completion_tokens}
        out["status"] = overall_status(out)
        return out

    return StageSpec("refine", request, apply)


def overall_status(row: dict) -> str:
    """'ok' when all three generations are usable, else the first failure, e.g. 'critique:no_conclusion'."""
    for stage in ("rollout", "critique", "refine"):
        if row[f"{stage}_status"] != OK:
            return f"{stage}:{row[f'{stage}_status']}"
    return OK


# ---------------------------------------------------------------- running a stage


@dataclass
class StageRun(ShardRun):
    followups: int = 0  # critique stage: conclusions asked for after a critique that gave none

    def throughput(self) -> dict:
        return {"rows": self.rows, "requests_this_run": self.requests,
                "followups_this_run": self.followups, "shards": self.shards,
                "shards_resumed": self.shards_resumed, "restarted_on_changed_inputs": self.restarted,
                **self.backend, "prompt_tokens_this_run": self.prompt_tokens,
                "completion_tokens_this_run": self.completion_tokens,
                "generation_seconds": round(self.generation_seconds, 2),
                "completion_tokens_per_s": self.tokens_per_second(),
                "wall_seconds": round(self.wall_seconds, 2)}


def run_stage(spec: StageSpec, rows: list[dict], backend_factory: Callable[[], Backend],
              out_dir, shard_size: int, seed: int, fingerprint: str) -> tuple[list[dict], StageRun]:
    """Generate for every row through the shard driver (cgd/generation/driver.py): resumable, one
    seed per request drawn from `seed` and the row id, the backend loaded only if a shard is missing."""
    followups = 0

    def shard(chunk: list[dict], backend: Backend, run: ShardRun) -> list[dict]:
        nonlocal followups
        requests = [spec.request(row) for row in chunk]
        active = [r for r in requests if r is not None]
        completions = iter(run.timed(lambda: backend.generate(active, seed)) if active else [])
        out = [spec.apply(row, next(completions) if req is not None else None) for row, req in zip(chunk, requests)]
        run.requests += len(active)
        if spec.followup is not None:
            asks = [(i, r) for i, r in ((i, spec.followup(row)) for i, row in enumerate(out)) if r is not None]
            if asks:
                replies = run.timed(lambda: backend.choose([r for _, r in asks], ["right", "wrong"], seed,
                                                           spec.followup_gen))
                for (i, _), c in zip(asks, replies):
                    out[i] = spec.apply_followup(out[i], c)
                followups += len(asks)
        return out

    merged, run = run_shards(spec.name, rows, shard_size, out_dir, fingerprint, backend_factory, shard)
    return merged, StageRun(**vars(run), followups=followups)


# ---------------------------------------------------------------- reports


def stage_report(rows: list[dict], run: StageRun) -> dict:
    stage = run.stage
    report = {"stage": stage, **run.throughput(),
              "by_status": dict(sorted(Counter(r[f"{stage}_status"] for r in rows).items()))}
    report["difficulty_by_status"] = difficulty_by_status(rows, f"{stage}_status")
    if stage == "rollout":
        verifiable = [r["verifier_correct"] for r in rows if r["verifier_correct"] is not None]
        report["student_correct"] = sum(verifiable)
        report["student_verifiable"] = len(verifiable)
        report["student_accuracy"] = _ratio(sum(verifiable), len(verifiable))
    elif stage == "critique":
        report["conclusions"] = dict(sorted(Counter(r["conclusion"] for r in rows).items()))
        report["conclusion_sources"] = dict(sorted(
            Counter(r.get("conclusion_source") or "none" for r in rows).items()))
        pairs = [(r["conclusion"], r["verifier_correct"]) for r in rows
                 if r["critique_agrees_with_verifier"] is not None]
        report["critique_vs_verifier"] = {
            f"conclusion_{c}__verifier_{'correct' if v else 'incorrect'}": n
            for (c, v), n in sorted(Counter(pairs).items())}
        agree = sum(r["critique_agrees_with_verifier"] for r in rows
                    if r["critique_agrees_with_verifier"] is not None)
        report["critique_accuracy"] = _ratio(agree, len(pairs))
        report["critique_compared"] = len(pairs)
        # Where the verdict came from (the critique itself, or the one-word follow-up): a parser
        # or teacher problem shows up as one source disagreeing with math-verify far more often.
        by_source = {}
        for r in rows:
            if r["critique_agrees_with_verifier"] is not None:
                s = by_source.setdefault(r["conclusion_source"], {"compared": 0, "disagree": 0})
                s["compared"] += 1
                s["disagree"] += not r["critique_agrees_with_verifier"]
        report["disagreement_with_verifier_by_source"] = {
            k: {**v, "rate": _ratio(v["disagree"], v["compared"])} for k, v in sorted(by_source.items())}
    elif stage == "refine":
        verifiable = [r["refined_correct"] for r in rows if r["refined_correct"] is not None]
        report["refined_correct"] = sum(verifiable)
        report["refined_verifiable"] = len(verifiable)
        report["refined_accuracy"] = _ratio(sum(verifiable), len(verifiable))
        report["overall_status"] = dict(sorted(Counter(r["status"] for r in rows).items()))
    return report


def difficulty_by_status(rows: list[dict], key: str) -> dict:
    """Per status (ok, truncated, ...): rows, the median length of the reference solution (longer
    solutions: harder problems) and how often the student's first answer was right where it could
    be checked. Dropping truncated rows skews the data toward easy problems when the truncated
    rows' references are longer and the student was right less often than on the kept ones."""
    import statistics

    out = {}
    for status in sorted({r[key] for r in rows}):
        group = [r for r in rows if r[key] == status]
        checked = [r["verifier_correct"] for r in group if r.get("verifier_correct") is not None]
        out[status] = {"rows": len(group),
                       "reference_solution_chars_median": statistics.median(
                           len(r.get("reference_solution") or "") for r in group),
                       "student_correct_rate": _ratio(sum(checked), len(checked))}
    return out


MIXTURE_KEYS = ("incorrect_fraction", "mixture_total", "label_source")


def generation_fingerprint(stage: str, input_digest: str, section: dict, model: dict,
                           prompt: prompts.Prompt, seed: int) -> str:
    """What a stage's generations depend on, including the code that makes and labels them
    (as DVC's deps do). Mixture settings are left out: changing them re-draws the mixture from
    the cached generations instead of generating again."""
    code = shards.code_digest(__file__, Path(generation.__file__).parent, Path(labels.__file__).parent, prompts.__file__)
    gen = {k: v for k, v in section.items() if k not in MIXTURE_KEYS}
    gen["backend"] = resolved_backend(gen["backend"])  # what will run, fallback included
    return shards.fingerprint(stage, input_digest, gen, model, prompt.version, prompt.template, seed, code)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


# ---------------------------------------------------------------- mixture (paper Fig. 5)


def incorrect_label(row: dict, source: str) -> bool | None:
    """Whether the student's answer counts as incorrect, by the critique or by math-verify."""
    if source == "critique":
        return {"wrong": True, "right": False}.get(row["conclusion"])
    return None if row["verifier_correct"] is None else not row["verifier_correct"]


def select_mixture(rows: list[dict], cfg: RefineConfig, seed: int) -> tuple[list[dict], dict]:
    """Mark rows `in_mixture`: usable rows drawn to the configured share of incorrect answers.

    With `incorrect_fraction` null every usable row is in. Otherwise `mixture_total` rows
    (or the most the fraction allows) are drawn, round(total * fraction) of them incorrect.
    `mixture_total: smaller_class` is the release's rule (src/filter_crit_ratios.py,
    `create_and_save_controlled_ratios`): every share at the size of the rarer label, so the shares
    compare at one size whatever the labels' balance. The release draws with Python's unseeded
    `random`, and at an odd size its 50/50 file adds one more correct row with `random.choice`, which
    may repeat a row; here the draw is seeded and without repeats (round(total * 0.5) incorrect).
    """
    usable = [r for r in rows if r["status"] == OK]
    label = {r["id"]: incorrect_label(r, cfg.label_source) for r in usable}
    incorrect = [r["id"] for r in usable if label[r["id"]] is True]
    correct = [r["id"] for r in usable if label[r["id"]] is False]
    unlabeled = len(usable) - len(incorrect) - len(correct)
    frac = cfg.incorrect_fraction
    if frac is None:
        chosen = {r["id"] for r in usable}
    else:
        if cfg.mixture_total == "smaller_class":
            total = min(len(incorrect), len(correct))
        else:
            total = cfg.mixture_total or _max_total(len(incorrect), len(correct), frac)
        if total == 0:
            raise ValueError(f"refine.mixture_total = {cfg.mixture_total!r} leaves no rows: {len(incorrect)} "
                             f"incorrect and {len(correct)} correct usable rows. Generate more data.")
        n_inc = round(total * frac)
        if n_inc > len(incorrect) or total - n_inc > len(correct):
            raise ValueError(
                f"refine.mixture_total = {total} at refine.incorrect_fraction = {frac} needs {n_inc} "
                f"incorrect and {total - n_inc} correct rows; only {len(incorrect)} and "
                f"{len(correct)} are usable. Lower refine.mixture_total or generate more data.")
        rng = random.Random(seed)
        chosen = set(rng.sample(incorrect, n_inc)) | set(rng.sample(correct, total - n_inc))
    out = [{**r, "student_incorrect": label.get(r["id"]), "in_mixture": r["id"] in chosen} for r in rows]
    report = {"label_source": cfg.label_source, "incorrect_fraction": frac, "mixture_total": cfg.mixture_total,
              "usable": len(usable),
              "usable_incorrect": len(incorrect), "usable_correct": len(correct),
              "usable_unlabeled": unlabeled, "in_mixture": len(chosen),
              "in_mixture_incorrect": sum(1 for i in incorrect if i in chosen),
              "excluded_not_ok": len(rows) - len(usable),
              "excluded_by_mixture": len(usable) - len(chosen)}
    return out, report


def _max_total(n_incorrect: int, n_correct: int, frac: float) -> int:
    """The largest total whose split round(total*frac) / rest fits the available rows."""
    if frac == 0:
        return n_correct
    if frac == 1:
        return n_incorrect
    total = int(min(n_incorrect / frac, n_correct / (1 - frac))) + 1
    while total > 0 and (round(total * frac) > n_incorrect or total - round(total * frac) > n_correct):
        total -= 1
    return total
