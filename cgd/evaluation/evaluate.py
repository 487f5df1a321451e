"""Stage 06: evaluate a model on the paper's benchmarks (Section 4.1.1, Tables 1-3, 6-8).

A model answers each problem zero-shot with a Qwen2.5-Math-style chain-of-thought prompt (final
answer in \\boxed{}, a letter for multiple choice): one greedy answer per problem, plus
`pass_at_k.n` sampled answers on the benchmarks listed there. Generations go into resumable
shards; grading, statistics and format drift are recomputed from them, so changing how answers
are graded never regenerates them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from cgd import generation
from cgd.config import EvalConfig, GenerationConfig, ModelConfig, Params
from cgd.data import benchmarks
from cgd.data.benchmarks import Problem
from cgd.distill import prompts
from cgd.evaluation import harness_prompts, reasoning, stats
from cgd.generation import Backend, Request, resolved_backend
from cgd.generation.driver import ShardRun, run_shards
from cgd.grading import judge, labels
from cgd.grading import rules as grading
from cgd.grading.commitment import committed
from cgd.runtime import shards
from cgd.runtime.provenance import model_digest  # noqa: F401 - notebook 06 hashes the model it evaluates

PROMPT_VERSION = "qwen25-math-cot-v1"


def messages(problem: Problem) -> list[dict]:
    """The student's view of a benchmark problem: the same layout it was trained and rolled out on."""
    return prompts.student_messages(problem.problem, problem.answer_type)


def request(request_id: str, problem: Problem, prompt_type: str = "ours", shots: int = 0) -> Request:
    """The generation request for a problem: our chat messages, or with a release prompt type
    (`eval.prompt_type`) the harness's raw text, `shots` demonstrations first, and its stop words.
    Multiple choice keeps ours."""
    if prompt_type == "ours" or problem.answer_type == "choice":
        return Request(request_id, messages(problem))
    text = harness_prompts.render(prompt_type, problem.problem, problem.benchmark, shots)
    return Request(request_id, messages(problem), prompt=text, stop=harness_prompts.stop_words(prompt_type))


def request_for(request_id: str, problem: Problem, cfg: EvalConfig) -> Request:
    return request(request_id, problem, cfg.prompt_type, cfg.num_shots.get(problem.benchmark, 0))


def prompt_text(problem: Problem, cfg: EvalConfig):
    """What the model is shown for a problem (fingerprinted with the generations)."""
    r = request_for("", problem, cfg)
    return r.messages if r.prompt is None else [r.prompt, list(r.stop)]


# ---------------------------------------------------------------- which model


@dataclass(frozen=True)
class EvalModel:
    name: str  # "base", or a training run "<method>-seed<seed>"
    path: str  # HF folder or hub id


def model_for(params: Params, name: str) -> EvalModel:
    """The base student, or the model a training run wrote (models/<method>/seed<seed>)."""
    if name == "base":
        return EvalModel("base", params.student.model)
    m = re.fullmatch(r"(\w+)-seed(\d+)", name)
    if not m or m.group(1) not in params.train.methods:
        raise ValueError(f"model '{name}' is neither 'base' nor <method>-seed<seed> for a method in "
                         f"train.methods ({', '.join(params.train.methods)})")
    return EvalModel(name, f"models/{m.group(1)}/seed{m.group(2)}")


def stage_server(cfg: EvalConfig, model: ModelConfig, out_dir: str | Path, seed: int):
    """The evaluation's one vLLM server (cgd.generation.vllm_server), shared by the benchmark generation and the
    lm-eval suites when either runs through it (`eval.generation.backend` / `eval.general.model`
    vllm_server); None otherwise. Not started here: the first request starts it, so a fully resumed
    stage with no suites starts nothing. Its log: <out_dir>/vllm_server.log."""
    from cgd.generation import vllm_server

    if "vllm_server" not in (cfg.generation.backend, cfg.general.model if cfg.general.tasks else None):
        return None
    return vllm_server.for_role(model, "student", seed, Path(out_dir) / "vllm_server.log")


# ---------------------------------------------------------------- what to generate


def load_problems(cfg: EvalConfig, seed: int) -> tuple[dict[str, list[Problem]], dict[str, dict]]:
    """The sampled problems per benchmark, and per benchmark how many rows it had and left out."""
    problems, counts = {}, {}
    for name, n in cfg.benchmarks.items():
        rows, skipped = benchmarks.load_counted(name, cfg.hub_mirror, cfg.hub_revisions.get(name))
        problems[name] = benchmarks.sample(rows, n, seed)
        counts[name] = {"rows": len(rows), "left_out": skipped, "evaluated": len(problems[name])}
    return problems, counts


def plan(problems: dict[str, list[Problem]], cfg: EvalConfig) -> list[dict]:
    """One item per answer to generate: greedy for every problem, then the sampled answers
    (sample-major, so an interrupted run has whole passes done)."""
    items = [{"id": f"{p.id}#greedy", "benchmark": b, "problem_id": p.id, "mode": "greedy", "sample": 0}
             for b, ps in problems.items() for p in ps]
    for j in range(cfg.pass_at_k.n if cfg.pass_at_k.benchmarks else 0):
        items += [{"id": f"{p.id}#s{j}", "benchmark": b, "problem_id": p.id, "mode": "sampled", "sample": j}
                  for b in cfg.pass_at_k.benchmarks for p in problems[b]]
    return items


def sampled_generation(cfg: EvalConfig) -> GenerationConfig:
    return replace(cfg.generation, temperature=cfg.pass_at_k.temperature, top_p=cfg.pass_at_k.top_p)


def fingerprint(model: EvalModel, digest: str, cfg: EvalConfig, items: list[dict],
                problems: dict[str, list[Problem]], seed: int) -> str:
    """What the generations depend on: model content, generation settings, prompts and problems.
    Grading settings are left out on purpose."""
    texts = {p.id: prompt_text(p, cfg) for ps in problems.values() for p in ps}
    backend = resolved_backend(cfg.generation.backend)  # what will run, fallback included
    return shards.fingerprint("eval", model.path, digest, cfg.generation, backend, cfg.pass_at_k,
                              [i["id"] for i in items], texts, PROMPT_VERSION, seed,
                              shards.code_digest(Path(generation.__file__).parent))


# ---------------------------------------------------------------- generating


def generate(items: list[dict], problems: dict[str, list[Problem]], backend_factory, cfg: EvalConfig,
             out_dir: str | Path, seed: int, fp: str) -> tuple[list[dict], dict]:
    """Generate every item through the shard driver (cgd/generation/driver.py), `generation.batch_size`
    items a shard, resumable. Within a shard each (mode, sample) is its own call; every request is
    seeded from `seed` and its id (which names the sample), so repeated samples of a problem differ
    and no seed depends on the shard size."""
    by_id = {p.id: p for ps in problems.values() for p in ps}
    gens = {"greedy": cfg.generation, "sampled": sampled_generation(cfg)}

    def shard(chunk: list[dict], backend: Backend, run: ShardRun) -> list[dict]:
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(chunk):
            groups.setdefault((item["mode"], item["sample"]), []).append(i)
        out: list[dict | None] = [None] * len(chunk)
        for (mode, _sample), idx in groups.items():
            requests = [request_for(chunk[i]["id"], by_id[chunk[i]["problem_id"]], cfg) for i in idx]
            for i, c in zip(idx, run.timed(lambda: backend.generate(requests, seed, gens[mode]))):
                out[i] = {**chunk[i], "output": c.text, "finish_reason": c.finish_reason,
                          "completion_tokens": c.completion_tokens, "error": c.error}
        return out

    rows, run = run_shards("eval generate", items, cfg.generation.batch_size, out_dir, fp, backend_factory, shard)
    return rows, {"items": run.rows, "shards": run.shards, "shards_resumed": run.shards_resumed,
                  "restarted_on_changed_inputs": run.restarted,
                  "completion_tokens_this_run": run.completion_tokens,
                  "generation_seconds": round(run.generation_seconds, 2), **run.backend,
                  "completion_tokens_per_s": run.tokens_per_second()}


# ---------------------------------------------------------------- grading and format drift

# Phrases that grade an answer rather than give one: what CFT trains a model to write.
_GRADING_LANGUAGE = re.compile(
    r"\b(?:the (?:student'?s?|given|provided|initial|original|above) (?:answer|solution|response)"
    r"|(?:solution|answer|response|reasoning) (?:is|was) (?:correct|incorrect|wrong|right|flawed)"
    r"|critique)\b", re.IGNORECASE)
# A line opening with the critique's verdict label ("Conclusion: ...", "**Conclusion**: ..."), whatever
# follows it: the line every training critique ends with, which no evaluation prompt asks for
# (the demo's CFT model writes "Conclusion: 5" under math problems).
_VERDICT_LINE = re.compile(r"^[ \t>#*_]*conclusion[*_ \t]*:", re.IGNORECASE | re.MULTILINE)


def format_flags(output: str, problem: Problem) -> dict:
    """Does the output read as a critique (a verdict, a "Conclusion:" line or grading language),
    and does it commit to no final answer (cgd.grading.commitment; no option letter)?"""
    critique_like = (labels.conclusion(output) != "missing" or bool(_GRADING_LANGUAGE.search(output or ""))
                     or bool(_VERDICT_LINE.search(output or "")))
    if problem.answer_type == "choice":
        no_answer = grading.extract_choice(output, problem.n_options) is None
    else:
        no_answer = committed(output or "") is None
    return {"critique_like": critique_like, "no_final_answer": no_answer}


def rules(cfg: EvalConfig) -> grading.Rules:
    return grading.Rules(timeout_s=cfg.grading_timeout_s, theoremqa_rel_tol=cfg.theoremqa_rel_tol)


def grade_rows(rows: list[dict], problems: dict[str, list[Problem]], cfg: EvalConfig) -> tuple[list[dict], dict]:
    """Each row judged under both rules (cgd.grading.judge): `verdicts` holds both, and `correct`,
    `extracted` and `reason` are those of `eval.grader`, the rule the metrics and tables use."""
    by_id = {p.id: p for ps in problems.values() for p in ps}
    items = [(by_id[r["problem_id"]].key(), r["output"]) for r in rows]
    t0 = time.perf_counter()
    verdicts = judge.grade_many(items, rules(cfg), cfg.grading_workers)
    seconds = time.perf_counter() - t0
    graded = []
    for r, both in zip(rows, verdicts):
        p, v = by_id[r["problem_id"]], both[cfg.grader]
        graded.append({**r, "gold": p.answer, "answer_type": p.answer_type, "grader": cfg.grader,
                       "extracted": v.extracted, "correct": v.correct, "reason": v.reason,
                       "verdicts": {name: verdict.to_dict() for name, verdict in both.items()},
                       **format_flags(r["output"], p)})
    return graded, {"samples": len(rows), "seconds": round(seconds, 2),
                    "samples_per_s": round(len(rows) / seconds, 1) if seconds else None}


# ---------------------------------------------------------------- metrics


def _pct(num: int, den: int) -> float | None:
    return round(100 * num / den, 2) if den else None


def _drift(rows: list[dict]) -> dict:
    n = len(rows)
    return {"outputs": n,
            "critique_like_pct": _pct(sum(r["critique_like"] for r in rows), n),
            "no_final_answer_pct": _pct(sum(r["no_final_answer"] for r in rows), n),
            "drifted_pct": _pct(sum(r["critique_like"] or r["no_final_answer"] for r in rows), n)}


def grader_counts(rows: list[dict]) -> dict:
    """Greedy samples: accuracy (%) and reasons under each rule, and how many samples they disagree on."""
    out = {}
    for name in judge.GRADERS:
        verdicts = [r["verdicts"][name] for r in rows]
        out[name] = {"correct": sum(v["correct"] for v in verdicts),
                     "accuracy": _pct(sum(v["correct"] for v in verdicts), len(verdicts)),
                     "reasons": dict(sorted(Counter(v["reason"] for v in verdicts).items()))}
    out["disagreements"] = sum(len({r["verdicts"][g]["correct"] for g in judge.GRADERS}) > 1 for r in rows)
    return out


def _scores(rows: list[dict]) -> dict[str, float]:
    return {r["problem_id"]: float(r["correct"]) for r in rows}


def benchmark_metrics(samples: list[dict], counts: dict, cfg: EvalConfig, seed: int) -> dict:
    out = {}
    for name in cfg.benchmarks:
        greedy = [r for r in samples if r["benchmark"] == name and r["mode"] == "greedy"]
        entry = {"title": benchmarks.REGISTRY[name].title, "group": benchmarks.REGISTRY[name].group,
                 **counts[name],
                 "accuracy": stats.mean_ci([r["correct"] for r in greedy], cfg.bootstrap_resamples, seed),
                 "grader": cfg.grader,
                 "by_grader": grader_counts(greedy),
                 "reasons": dict(sorted(Counter(r["reason"] for r in greedy).items())),
                 "finish": dict(sorted(Counter(r["finish_reason"] for r in greedy).items())),
                 "format": _drift(greedy),
                 # words and steps per greedy response (cgd/evaluation/reasoning.py defines both)
                 "reasoning": {k: stats.mean_ci([f(r["output"]) for r in greedy], cfg.bootstrap_resamples, seed, scale=1)
                               for k, f in (("words", reasoning.words), ("steps", reasoning.steps))}}
        sampled = [r for r in samples if r["benchmark"] == name and r["mode"] == "sampled"]
        if sampled:
            per_problem: dict[str, list[bool]] = {}
            for r in sampled:
                per_problem.setdefault(r["problem_id"], []).append(r["correct"])
            entry["pass_at_k"] = {"n": cfg.pass_at_k.n, **{
                f"pass@{k}": stats.mean_ci([stats.pass_at_k(len(v), sum(v), k) for v in per_problem.values()],
                                           cfg.bootstrap_resamples, seed)
                for k in cfg.pass_at_k.k}}
        out[name] = entry
    return out


def compare_with_base(samples: list[dict], base_samples: list[dict], cfg: EvalConfig, seed: int) -> dict:
    """Per benchmark, the paired difference (this model - base) over the problems both answered:
    greedy accuracy, and pass@1 of the sampled pass where both have one."""
    out = {}
    for name in cfg.benchmarks:
        mine = _scores([r for r in samples if r["benchmark"] == name and r["mode"] == "greedy"])
        base = _scores([r for r in base_samples if r["benchmark"] == name and r["mode"] == "greedy"])
        common = sorted(set(mine) & set(base))
        out[name] = stats.paired_difference([mine[i] for i in common], [base[i] for i in common],
                                            cfg.bootstrap_resamples, seed)
    return out


# The paper's claims as paired comparisons on the same problems: CGD vs CFT (Tables 1, 6, 7: the
# Δ row) and CGD vs CGD without the critique (Fig. 4).
CLAIMS = {"cgd_minus_cft": ("cgd", "cft"), "cgd_minus_cgd_no_critique": ("cgd", "cgd_no_critique")}


def _paired_scores(a: list[dict], b: list[dict], bench: str) -> tuple[list[float], list[float]]:
    mine = _scores([r for r in a if r["benchmark"] == bench and r["mode"] == "greedy"])
    other = _scores([r for r in b if r["benchmark"] == bench and r["mode"] == "greedy"])
    common = sorted(set(mine) & set(other))
    return [mine[i] for i in common], [other[i] for i in common]


def compare_methods(samples: dict[str, list[dict]], cfg: EvalConfig, seeds: list[int], seed: int) -> dict:
    """For each claim (CLAIMS) and benchmark, and each paper group's average, the paired difference
    a - b on the same problems: per training seed, and pooled over seeds (each seed's problem pairs
    together). `samples` maps run names ("cgd-seed0") to their graded samples; a claim whose runs
    are missing is left out."""
    out = {}
    for claim, (a, b) in CLAIMS.items():
        runs_a = {s: samples[f"{a}-seed{s}"] for s in seeds if f"{a}-seed{s}" in samples}
        runs_b = {s: samples[f"{b}-seed{s}"] for s in seeds if f"{b}-seed{s}" in samples}
        paired = compare_runs(runs_a, runs_b, cfg, seed)
        if paired is not None:
            out[claim] = {"a": a, "b": b, **paired}
    return out


def compare_runs(runs_a: dict[int, list[dict]], runs_b: dict[int, list[dict]], cfg: EvalConfig,
                 seed: int) -> dict | None:
    """The paired difference a - b per benchmark and paper group average, per training seed and
    pooled over the seeds both have (each seed's problem pairs together); None without a common
    seed. `runs_*` map a training seed to that run's graded samples."""
    groups = {"avg_group1": [b for b in cfg.benchmarks if benchmarks.REGISTRY[b].group == 1],
              "avg_group2": [b for b in cfg.benchmarks if benchmarks.REGISTRY[b].group == 2]}
    present = [s for s in runs_a if s in runs_b]
    if not present:
        return None
    pairs = {s: {bench: _paired_scores(runs_a[s], runs_b[s], bench) for bench in cfg.benchmarks} for s in present}
    pooled = {bench: tuple(sum((list(pairs[s][bench][i]) for s in present), []) for i in (0, 1))
              for bench in cfg.benchmarks}

    def report(by_bench):
        r = {bench: stats.paired_difference(*by_bench[bench], cfg.bootstrap_resamples, seed)
             for bench in cfg.benchmarks}
        for g, members in groups.items():
            if members:
                r[g] = stats.paired_group_difference({m: by_bench[m] for m in members},
                                                     cfg.bootstrap_resamples, seed)
        return r

    return {"seeds": present, "per_seed": {str(s): report(pairs[s]) for s in present}, "pooled": report(pooled)}


def summary(name: str, path: str, per_benchmark: dict, samples: list[dict]) -> dict:
    """Headline numbers: the plain mean accuracy of each paper group over the benchmarks run
    (the paper's Avg. columns), and format drift over all greedy outputs."""
    groups = {}
    for g in (1, 2):
        members = [b for b, m in per_benchmark.items() if m["group"] == g and m["accuracy"]["mean"] is not None]
        if members:
            groups[f"group{g}"] = {"benchmarks": members, "mean_accuracy": round(
                sum(per_benchmark[b]["accuracy"]["mean"] for b in members) / len(members), 2)}
    return {"model": name, "path": path, "groups": groups,
            "format_drift": _drift([r for r in samples if r["mode"] == "greedy"])}
