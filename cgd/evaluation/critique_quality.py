"""The critiques' quality, judged (the revised paper's LLM-as-judge; the release README's "Critique
Quality Analysis": 20,000 training critiques scored 1-5 on informativeness and specificity, split by
whether the student's answer was wrong or right).

Stage critique_quality samples `critique_quality.rows` of stage 03's critiques, half on answers the
verifier marks wrong and half on right ones (fewer where a class has fewer; the shortfall is
reported), asks the judge (`critique_quality.model`, default the teacher, on any backend) to score each
with a versioned rubric (RUBRIC_FILE), and parses two score lines. A reply without both scores in 1-5
is counted as unparsed and left out of every statistic: never guessed.

The report, per label: mean and SD of each score with a bootstrap CI of the mean, the share with both
scores >= 4 and the share at maximum informativeness (CIs); across labels: the difference of means
(wrong - right, bootstrap CI), Cohen's d (pooled SD, bootstrap CI), the odds ratio of "both >= 4"
(Woolf's CI, 0.5 added to every cell when one is 0) and the ratio of the maximum-informativeness shares.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np

from cgd.config import Params
from cgd.distill import prompts
from cgd.distill.prompts import Prompt
from cgd.distill.status import OK
from cgd.evaluation import stats
from cgd.generation import Request
from cgd.generation.driver import ShardRun, run_shards
from cgd.runtime import shards

RUBRIC_FILE = Path(__file__).with_name("critique_rubric.yaml")
SCORES = ("informativeness", "specificity")
LABELS = ("wrong", "right")  # the student's answer, by the verifier


def load_rubric(path: str | Path | None = None) -> Prompt:
    """The judge's prompt: a prompt file (cgd/distill/prompts.py) with `version`, `system` and a `user`
    template over question, student_answer and critique."""
    return prompts.load("critique_quality", str(path or RUBRIC_FILE))


# One score per line, its label first: "Informativeness: 4", "**Specificity**: 5/5". A template
# echoed back ("Informativeness: <a number from 1 to 5>") has no digit right after the label.
_SCORE = {s: re.compile(rf"^[\s*#_-]*{s}[\s*_]*[:=\-]\s*\**\s*([1-5])\s*\**\s*(?:/\s*5)?\s*\**\s*\.?\s*$",
                        re.IGNORECASE | re.MULTILINE) for s in SCORES}


def parse(reply: str) -> dict[str, int] | None:
    """{"informativeness": k, "specificity": k} from a judge's reply (the last line of each), or None."""
    out = {}
    for name, pattern in _SCORE.items():
        hits = pattern.findall(reply or "")
        if not hits:
            return None
        out[name] = int(hits[-1])
    return out


def label(row: dict) -> str | None:
    v = row.get("verifier_correct")
    return None if v is None else ("right" if v else "wrong")


def sample(rows: list[dict], n: int, seed: int) -> tuple[list[dict], dict]:
    """Up to n/2 critiques on wrong answers and n/2 on right ones (seeded), and what was left out."""
    usable = [r for r in rows if r.get("critique_status") == OK and r.get("critique") and label(r) is not None]
    by_label = {lab: [r for r in usable if label(r) == lab] for lab in LABELS}
    rng = random.Random(seed)
    chosen, report = [], {"rows": len(rows), "usable": len(usable), "unusable": len(rows) - len(usable),
                          "asked": n}
    for lab in LABELS:
        pool = by_label[lab]
        take = sorted(rng.sample(range(len(pool)), min(n // 2, len(pool))))
        chosen += [pool[i] for i in take]
        report[f"available_{lab}"] = len(pool)
        report[f"judged_{lab}"] = len(take)
    report["shortfall"] = n - len(chosen)
    return chosen, report


def requests(rows: list[dict], rubric: Prompt) -> list[Request]:
    return [Request(r["id"], rubric.render(question=r["question"], student_answer=r["student_answer"],
                                           critique=r["critique"]), row=r) for r in rows]


def judge(rows: list[dict], cfg: Params, out_dir: str | Path, backend_factory) -> tuple[list[dict], ShardRun]:
    """Score every row through the shard driver (resumable); each output row keeps id, label, the
    reply and its parsed scores (None: unparsed)."""
    q = cfg.critique_quality
    rubric = load_rubric(q.rubric_file)
    fingerprint = shards.fingerprint("critique_quality", rubric.version, rubric.template, rubric.system, q,
                                     [(r["id"], r["critique"]) for r in rows], cfg.seed)

    def shard(chunk: list[dict], backend, run: ShardRun) -> list[dict]:
        completions = run.timed(lambda: backend.generate(requests(chunk, rubric), cfg.seed, q))
        run.requests += len(chunk)
        out = []
        for row, c in zip(chunk, completions):
            scores = parse(c.text) if c.finish_reason != "error" else None
            out.append({"id": row["id"], "label": label(row), "reply": c.text, "finish_reason": c.finish_reason,
                        "error": c.error, "scores": scores, "rubric": rubric.version})
        return out

    return run_shards("critique_quality", rows, q.batch_size, out_dir, fingerprint, backend_factory, shard)


# ---------------------------------------------------------------- the statistics


def _mean_sd_ci(x: np.ndarray, resamples: int, seed: int) -> dict:
    ci = stats.mean_ci(x, resamples, seed, scale=1)
    return {"n": int(x.size), "mean": ci["mean"], "sd": round(float(x.std(ddof=1)), 3) if x.size > 1 else None,
            "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or b.size < 2:
        return None
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    return None if pooled == 0 else float((a.mean() - b.mean()) / pooled)


def _bootstrap(a: np.ndarray, b: np.ndarray, fn, resamples: int, seed: int) -> tuple[float | None, float | None]:
    """Percentile CI of fn(a, b) with a and b resampled independently."""
    if a.size < 2 or b.size < 2:
        return None, None
    rng = np.random.default_rng(seed)
    values = [fn(rng.choice(a, a.size), rng.choice(b, b.size)) for _ in range(resamples)]
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return round(float(lo), 3), round(float(hi), 3)


def odds_ratio(a: int, n_a: int, b: int, n_b: int) -> dict:
    """Odds of a success in group a over group b, with Woolf's 95% CI (0.5 added to every cell
    when one is 0, Haldane's correction)."""
    cells = [a, n_a - a, b, n_b - b]
    if min(n_a, n_b) == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    if 0 in cells:
        cells = [c + 0.5 for c in cells]
    value = (cells[0] / cells[1]) / (cells[2] / cells[3])
    se = math.sqrt(sum(1 / c for c in cells))
    return {"value": round(value, 3), "ci_low": round(math.exp(math.log(value) - 1.96 * se), 3),
            "ci_high": round(math.exp(math.log(value) + 1.96 * se), 3)}


def report(scored: list[dict], resamples: int, seed: int) -> dict:
    """The statistics above from the judged rows (unparsed ones counted, then left out)."""
    out: dict = {"judged": len(scored), "unparsed": {lab: sum(r["scores"] is None for r in scored if r["label"] == lab)
                                                     for lab in LABELS},
                 "errors": sum(r["finish_reason"] == "error" for r in scored), "by_label": {}, "wrong_minus_right": {}}
    parsed = {lab: [r["scores"] for r in scored if r["label"] == lab and r["scores"] is not None] for lab in LABELS}
    arrays = {lab: {s: np.array([p[s] for p in parsed[lab]], dtype=float) for s in SCORES} for lab in LABELS}
    high = {lab: np.array([p["informativeness"] >= 4 and p["specificity"] >= 4 for p in parsed[lab]], dtype=float)
            for lab in LABELS}
    top = {lab: np.array([p["informativeness"] == 5 for p in parsed[lab]], dtype=float) for lab in LABELS}
    for lab in LABELS:
        out["by_label"][lab] = {"n": len(parsed[lab]),
                                **{s: _mean_sd_ci(arrays[lab][s], resamples, seed) for s in SCORES},
                                "both_at_least_4": stats.mean_ci(high[lab], resamples, seed),
                                "max_informativeness": stats.mean_ci(top[lab], resamples, seed)}
    for s in SCORES:
        a, b = arrays["wrong"][s], arrays["right"][s]
        diff = None if not (a.size and b.size) else round(float(a.mean() - b.mean()), 3)
        lo, hi = _bootstrap(a, b, lambda x, y: float(x.mean() - y.mean()), resamples, seed)
        d = _cohens_d(a, b)
        d_lo, d_hi = _bootstrap(a, b, _cohens_d, resamples, seed)
        out["wrong_minus_right"][s] = {"diff": diff, "ci_low": lo, "ci_high": hi,
                                       "cohens_d": None if d is None else round(d, 3), "d_ci_low": d_lo, "d_ci_high": d_hi}
    w, r = high["wrong"], high["right"]
    out["wrong_minus_right"]["both_at_least_4_odds_ratio"] = odds_ratio(int(w.sum()), w.size, int(r.sum()), r.size)
    tw, tr = top["wrong"], top["right"]
    out["wrong_minus_right"]["max_informativeness_ratio"] = (
        round(float(tw.mean() / tr.mean()), 3) if tw.size and tr.size and tr.mean() > 0 else None)
    return out


# ---------------------------------------------------------------- the stage


def run(params_file: str = "params.yaml", critiques_file: str = "data/03_critique/critiques.jsonl",
        out_dir: str = "data/03_critique_quality", metrics_file: str = "metrics/critique_quality.json") -> dict:
    """Stage critique_quality: sample, judge (resumable shards under out_dir), report; writes
    out_dir/scores.jsonl and metrics_file. rows 0 writes an empty report that says the stage is off."""
    from cgd import config as P
    from cgd import generation
    from cgd.runtime import io, provenance

    cfg = P.load(params_file)
    q = cfg.critique_quality
    if not q.rows:
        result = {"status": "off (critique_quality.rows is 0)"}
        io.write_jsonl(Path(out_dir) / "scores.jsonl", [])
        io.write_json(metrics_file, provenance.stamp(result))
        return result
    chosen, drawn = sample(list(io.read_jsonl(critiques_file)), q.rows, cfg.seed)
    judge_model = P.role_model(cfg, "judge")

    def factory():
        return generation.make_backend("critique_quality", "teacher", q, judge_model, cfg.seed,
                                       log_path=Path(out_dir) / "vllm_server.log")

    scored, shard_run = judge(chosen, cfg, out_dir, factory)
    io.write_jsonl(Path(out_dir) / "scores.jsonl", scored)
    rubric = load_rubric(q.rubric_file)
    result = {"status": "done", "judge": judge_model.model, "backend": q.backend, "rubric": rubric.version,
              "sample": drawn, **report(scored, cfg.eval.bootstrap_resamples, cfg.seed),
              "throughput": {"requests": shard_run.requests, "shards_resumed": shard_run.shards_resumed,
                             "completion_tokens": shard_run.completion_tokens,
                             "completion_tokens_per_s": shard_run.tokens_per_second(),
                             "wall_seconds": round(shard_run.wall_seconds, 2)}}
    io.write_json(metrics_file, provenance.stamp(result))
    return result
