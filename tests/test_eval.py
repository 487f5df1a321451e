"""Stage 06 on the tiny model: generation shards, grading, metrics, format drift, lm-eval."""

from dataclasses import replace

import pytest

from cgd import config as P
from cgd.data.benchmarks import Problem
from cgd.evaluation import evaluate as evaluation
from cgd.evaluation import general
from cgd.generation import make_backend
from cgd.runtime.io import read_json, read_jsonl

REPO_NOTEBOOK = "notebooks/06_eval.ipynb"


def _cfg(tiny_model, mirror, **extra):
    # The tiny model's 16-wide heads are below what vLLM's CPU attention supports (32+):
    # these tests generate with the transformers backend; tests/test_vllm.py covers vLLM.
    overrides = {"student.model": str(tiny_model), "eval.hub_mirror": str(mirror),
                 "eval.generation.backend": "transformers",
                 "eval.benchmarks": {"gsm8k": 2, "aime24": 2, "gpqa": 2},
                 "data.decontamination.benchmarks": ["gsm8k", "aime24", "gpqa"],
                 "eval.pass_at_k.benchmarks": ["aime24"], "eval.pass_at_k.n": 3, "eval.pass_at_k.k": [1, 3],
                 "eval.generation.max_new_tokens": 12, "eval.generation.batch_size": 4,
                 "eval.bootstrap_resamples": 200, **extra}
    return P.load("params.yaml", overrides)


def _run(cfg, model_path, out_dir):
    target = evaluation.EvalModel("base", str(model_path))
    problems, counts = evaluation.load_problems(cfg.eval, cfg.seed)
    items = evaluation.plan(problems, cfg.eval)
    fp = evaluation.fingerprint(target, evaluation.model_digest(target.path), cfg.eval, items, problems, cfg.seed)
    model_cfg = replace(cfg.student, model=target.path)
    rows, report = evaluation.generate(
        items, problems, lambda: make_backend("eval", "student", cfg.eval.generation, model_cfg, cfg.seed),
        cfg.eval, out_dir, cfg.seed, fp)
    return problems, counts, rows, report


def test_plan_generate_resume_and_restart(tiny_model, eval_hub_mirror, tmp_path):
    cfg = _cfg(tiny_model, eval_hub_mirror)
    problems, _, rows, report = _run(cfg, tiny_model, tmp_path / "out")
    # 6 greedy answers, then 3 sampled passes over the 2 AIME problems
    assert [r["mode"] for r in rows] == ["greedy"] * 6 + ["sampled"] * 6
    assert report["shards"] == 3 and report["shards_resumed"] == 0
    sampled = [r["output"] for r in rows if r["problem_id"] == "aime24-60" and r["mode"] == "sampled"]
    assert len(set(sampled)) == 3, "each sample of a problem must be drawn with its own seed"
    # Rerun: every shard is reused, nothing is generated, rows are identical.
    _, _, again, report2 = _run(cfg, tiny_model, tmp_path / "out")
    assert again == rows and report2["shards_resumed"] == 3 and report2["backend"].startswith("none")
    # A different model at the same settings starts over instead of reusing the shards.
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_model.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "config.json").write_text((tiny_model / "config.json").read_text().replace("}", ' }', 1))
    _, _, _, report3 = _run(cfg, other, tmp_path / "out")
    assert report3["restarted_on_changed_inputs"] and report3["shards_resumed"] == 0


def test_metrics_from_graded_samples(tiny_model, eval_hub_mirror, tmp_path):
    cfg = _cfg(tiny_model, eval_hub_mirror)
    problems, counts, rows, _ = _run(cfg, tiny_model, tmp_path / "out")
    # Replace the tiny model's noise with known answers so the numbers can be checked.
    by_id = {p.id: p for ps in problems.values() for p in ps}
    for i, r in enumerate(rows):
        gold = by_id[r["problem_id"]].answer
        right = i % 2 == 0
        r["output"] = f"Reasoning... \\boxed{{{gold if right else 'Z' if r['benchmark'] == 'gpqa' else '-1'}}}"
    samples, grade_report = evaluation.grade_rows(rows, problems, cfg.eval)
    assert grade_report["samples"] == 12
    assert [s["correct"] for s in samples[:6]] == [True, False] * 3
    assert samples[0]["extracted"] and samples[0]["reason"] == "correct"
    assert samples[5]["reason"] == "no_final_answer"  # gpqa: "Z" is not an option letter
    m = evaluation.benchmark_metrics(samples, counts, cfg.eval, cfg.seed)
    assert m["gsm8k"]["accuracy"]["mean"] == 50.0 and m["gsm8k"]["accuracy"]["n"] == 2
    assert m["gsm8k"]["reasons"] == {"correct": 1, "wrong": 1}
    # both rules' verdicts are on every sample; eval.grader picks the one `correct` and the metrics use
    assert samples[0]["grader"] == "committed" and set(samples[0]["verdicts"]) == {"committed", "harness"}
    assert m["gsm8k"]["grader"] == "committed"
    assert m["gsm8k"]["by_grader"]["harness"] == {"correct": 1, "accuracy": 50.0, "reasons": {"correct": 1, "wrong": 1}}
    assert m["gsm8k"]["by_grader"]["disagreements"] == 0
    theirs, _ = evaluation.grade_rows(rows, problems, replace(cfg.eval, grader="harness"))
    assert [s["correct"] for s in theirs] == [s["verdicts"]["harness"]["correct"] for s in samples]
    assert {s["grader"] for s in theirs} == {"harness"}
    assert m["aime24"]["pass_at_k"]["pass@1"]["mean"] == 50.0
    # aime24-60's samples are rows 6, 8, 10 (all right); aime24-61's are 7, 9, 11 (all wrong)
    assert m["aime24"]["pass_at_k"]["pass@3"]["mean"] == 50.0
    assert m["gpqa"]["format"]["no_final_answer_pct"] == 50.0
    assert counts["gpqa"] == {"rows": 2, "left_out": {}, "evaluated": 2}
    worse = [dict(s, correct=False) for s in samples]
    vs = evaluation.compare_with_base(samples, worse, cfg.eval, cfg.seed)
    assert vs["gsm8k"]["diff"] == 50.0 and vs["gsm8k"]["wins"] == 1 and vs["gsm8k"]["losses"] == 0
    summary = evaluation.summary("base", str(tiny_model), m, samples)
    assert summary["groups"]["group1"]["benchmarks"] == ["gsm8k", "aime24"]
    assert summary["groups"]["group2"]["mean_accuracy"] == m["gpqa"]["accuracy"]["mean"]


GSM = Problem("gsm8k", "g1", "q", "72", "number")
MC = Problem("gpqa", "m1", "q\n\n(A) x\n(B) y", "A", "choice", 2)


@pytest.mark.parametrize("output,problem,critique_like,no_answer", [
    ("Natalia sold 48 + 24 = 72 clips. The final answer is \\boxed{72}.", GSM, False, False),
    ("The student's answer is wrong: 48/2 = 24, not 26.\n\nConclusion: wrong", GSM, True, True),
    ("The solution is correct. Conclusion: right", GSM, True, True),
    ("Step 1 checks out, so the answer is \\boxed{72}. Critique: none needed.", GSM, True, False),
    ("She sold 72 clips in total", GSM, False, True),
    ("The answer to the question is: 5\n\nConclusion: 5", GSM, True, False),  # the demo's CFT model: it states 5
    ("48 + 24 = 72\n**Conclusion**: \\boxed{72}", GSM, True, False),
    ("In conclusion, she sold \\boxed{72} clips.", GSM, False, False),
    ("Option A fits, \\boxed{A}", MC, False, False),
    ("Both options look plausible.", MC, False, True),
])
def test_format_drift_flags(output, problem, critique_like, no_answer):
    assert evaluation.format_flags(output, problem) == {"critique_like": critique_like,
                                                        "no_final_answer": no_answer}


def test_model_names(raw_params):
    cfg = P.from_dict(raw_params)
    assert evaluation.model_for(cfg, "base").path == cfg.student.model
    assert evaluation.model_for(cfg, "cgd-seed0") == evaluation.EvalModel("cgd-seed0", "models/cgd/seed0")
    with pytest.raises(ValueError, match="train.methods"):
        evaluation.model_for(cfg, "rlhf-seed0")


def test_eval_params_are_validated(raw_params):
    raw_params["eval"]["pass_at_k"]["benchmarks"] = ["aime24"]
    with pytest.raises(P.ParamsError, match="eval.pass_at_k.benchmarks"):
        P.from_dict(raw_params)
    raw_params["eval"]["benchmarks"]["aime24"] = 5
    raw_params["data"]["decontamination"]["benchmarks"].append("aime24")
    raw_params["eval"]["pass_at_k"]["k"] = [1, 32]
    with pytest.raises(P.ParamsError, match="eval.pass_at_k.k"):
        P.from_dict(raw_params)
    raw_params["eval"]["pass_at_k"]["k"] = [1, 4]
    P.from_dict(raw_params)
    raw_params["eval"]["generation"]["backend"] = "reference"
    with pytest.raises(P.ParamsError, match="eval.generation.backend"):
        P.from_dict(raw_params)


def test_lm_eval_s_vllm_gets_the_resolved_dtype(monkeypatch):
    """`auto` means bf16 where the hardware runs it, else fp32: lm-eval's vLLM must get that, not
    vLLM's own `auto` (the checkpoint's bf16, emulated on a CPU without bf16 instructions)."""
    from cgd.runtime import device

    cfg = P.load("params.yaml", {})
    assert cfg.student.dtype == "auto"
    for has_bf16, name in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(device, "bf16_supported", lambda: has_bf16)
        assert general.model_args("vllm", "m", cfg.student, "float32", None)["dtype"] == name
    explicit = replace(cfg.student, dtype="bfloat16")
    assert general.model_args("vllm", "m", explicit, "float32", None)["dtype"] == "bfloat16"


def test_lm_eval_runs_a_local_custom_task(tiny_model):
    cfg = P.load("params.yaml", {"student.model": str(tiny_model)})
    gcfg = replace(cfg.eval.general, tasks={"cgd_local_mc": "acc,none", "cgd_local_gen": "exact_match,none"},
                   include_path="tests/fixtures/lm_eval_tasks", batch_size=4)
    out = general.run(str(tiny_model), gcfg, cfg.student, seed=0, dtype="float32", device="cpu")
    assert out["cgd_local_mc"]["docs"] == 6 and 0 <= out["cgd_local_mc"]["value"] <= 100
    assert out["cgd_local_mc"]["stderr"] is not None
    assert out["cgd_local_gen"]["metric"] == "exact_match,none"
    bad = replace(gcfg, tasks={"cgd_local_mc": "f1,none"})
    with pytest.raises(KeyError, match="reported no 'f1,none'"):
        general.run(str(tiny_model), bad, cfg.student, seed=0, dtype="float32", device="cpu")


def test_lm_eval_group_reports_its_aggregate_and_subtask_documents(tiny_model):
    """A group (as leaderboard_musr, leaderboard_bbh): its metric comes from aggregate_metric_list
    and lm-eval gives it no n-samples entry, so its documents are its subtasks' sum."""
    cfg = P.load("params.yaml", {"student.model": str(tiny_model)})
    gcfg = replace(cfg.eval.general, tasks={"cgd_local_group": "acc,none"},
                   include_path="tests/fixtures/lm_eval_tasks", batch_size=4)
    out = general.run(str(tiny_model), gcfg, cfg.student, seed=0, dtype="float32", device="cpu")
    group = out["cgd_local_group"]
    assert group["docs"] == 12 and group["subtasks"] == ["cgd_local_mc", "cgd_local_mc_b"]
    assert 0 <= group["value"] <= 100 and group["stderr"] is not None


def test_ifeval_without_its_tokenizer_fails_before_generating(tmp_path, monkeypatch):
    """IFEval scores with NLTK's punkt_tab, which lm-eval would download at run time: offline and
    absent, the stage stops at once naming what to fetch; present under NLTK_DATA, it goes ahead."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(RuntimeError, match="punkt_tab.*NLTK_DATA"):
        general.check_resources({"leaderboard_ifeval": "prompt_level_strict_acc,none"})
    general.check_resources({"truthfulqa_mc2": "acc,none"})  # needs nothing
    (tmp_path / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)
    general.check_resources({"leaderboard_ifeval": "prompt_level_strict_acc,none"})


@pytest.mark.slow
def test_eval_notebook_end_to_end(tiny_model, eval_hub_mirror, tmp_path):
    import papermill as pm

    overrides = {"student.model": str(tiny_model), "eval.hub_mirror": str(eval_hub_mirror),
                 "eval.generation.backend": "transformers",  # tiny heads are too narrow for vLLM on CPU
                 "eval.benchmarks": {"gsm8k": 3, "math500": 2, "aime24": 2, "mmlu_pro": 2},
                 "data.decontamination.benchmarks": ["gsm8k", "math500", "aime24", "mmlu_pro"],
                 "eval.pass_at_k.benchmarks": ["aime24"], "eval.pass_at_k.n": 2, "eval.pass_at_k.k": [1, 2],
                 "eval.generation.max_new_tokens": 8, "eval.bootstrap_resamples": 200,
                 "eval.general.tasks": {"cgd_local_mc": "acc,none"},
                 "eval.general.include_path": "tests/fixtures/lm_eval_tasks",
                 "figures.formats": ["png", "pdf"]}  # the demo commits PNGs only; PDFs still work
    for model in ("base", "cgd-seed0"):
        pm.execute_notebook(
            REPO_NOTEBOOK, str(tmp_path / f"{model}.ipynb"), kernel_name="cgd", progress_bar=False,
            cwd="notebooks",
            parameters={"overrides": overrides, "model": model, "model_path": str(tiny_model),
                        "out_dir": str(tmp_path / model), "metrics_file": str(tmp_path / f"{model}.json"),
                        "base_samples": str(tmp_path / "base" / "samples.jsonl")})
    base, cgd = read_json(tmp_path / "base.json"), read_json(tmp_path / "cgd-seed0.json")
    assert set(base["benchmarks"]) == {"gsm8k", "math500", "aime24", "mmlu_pro"}
    for name, m in cgd["benchmarks"].items():
        assert m["accuracy"]["n"] == m["evaluated"]
        assert set(m["format"]) == {"outputs", "critique_like_pct", "no_final_answer_pct", "drifted_pct"}
        assert cgd["vs_base"][name]["n"] == m["evaluated"]
        assert cgd["vs_base"][name]["diff"] == 0.0  # same weights, greedy: identical answers
    assert "pass@2" in cgd["benchmarks"]["aime24"]["pass_at_k"]
    assert base["vs_base"] is None and base["general"]["cgd_local_mc"]["docs"] == 6
    samples = list(read_jsonl(tmp_path / "cgd-seed0" / "samples.jsonl"))
    assert len(samples) == 9 + 4 and {"extracted", "correct", "reason", "gold"} <= set(samples[0])

    # Stage 07 on these metrics: table cells equal the metrics JSON, absent inputs read "not run".
    evals = tmp_path / "eval"
    evals.mkdir()
    for model in ("base", "cgd-seed0"):
        (evals / f"{model}.json").write_text((tmp_path / f"{model}.json").read_text())
    pm.execute_notebook(
        "notebooks/07_figures.ipynb", str(tmp_path / "07.ipynb"), kernel_name="cgd", progress_bar=False,
        cwd="notebooks", parameters={"overrides": overrides, "eval_dir": str(evals),
                                     "train_dir": str(tmp_path / "no-training"), "out_dir": str(tmp_path / "fig"),
                                     "diagnostics_file": str(tmp_path / "no-diagnostics.json"),
                                     "comparisons_file": str(tmp_path / "comparisons.json")})
    import pandas as pd

    table = pd.read_csv(tmp_path / "fig" / "table1.csv")
    for method, metrics in (("base", base), ("cgd", cgd)):
        for bench in ("gsm8k", "math500"):
            cell = table[(table.method == method) & (table.column == bench)].iloc[0]
            assert cell["run"] == round(metrics["benchmarks"][bench]["accuracy"]["mean"], 1)
            assert cell["ci_low"] == round(metrics["benchmarks"][bench]["accuracy"]["ci_low"], 1)
    assert table[(table.method == "sft") & (table.column == "gsm8k")]["run"].isna().all()
    index = (tmp_path / "fig" / "INDEX.md").read_text()
    assert "| Fig. 8 | — | not run |" in index and "| Table 2 | — | not run |" in index
    assert "| Table 1 |" in index and "partial: 3 of 8 benchmarks" in index  # gsm8k, math500, mmlu_pro
    assert (tmp_path / "fig" / "fig2_methods.png").exists() and (tmp_path / "fig" / "format_drift.pdf").exists()
    # The tiny student is not LLaMA: the paper's numbers are references, no difference is printed.
    with_paper = table[table.paper.notna()]
    assert len(with_paper) and with_paper.paper_is_reference.all() and with_paper["diff"].isna().all()
    assert "ref. 85.3" in (tmp_path / "fig" / "table1.md").read_text()
    # Every paper table has a way to run it: Tables 3 and 7 name their profiles, CFT* its method.
    assert "llama8b-base-webinstruct" in index and "mixtral-webinstruct" in index and "olmo-webinstruct" in index
    assert "cft_gpt4o in train.methods" in index and "| Table 5 | `" in index and "| Fig. 1 | — | diagram" in index


def test_compare_methods_pairs_the_same_problems_per_seed_and_pooled(raw_params):
    raw_params["eval"]["benchmarks"] = {"gsm8k": 4, "math500": 2}
    cfg = P.from_dict(raw_params)

    def run(correct: dict[str, list[int]]):
        return [{"benchmark": b, "mode": "greedy", "problem_id": f"{b}-{i}", "correct": bool(c)}
                for b, cs in correct.items() for i, c in enumerate(cs)]

    samples = {"cgd-seed0": run({"gsm8k": [1, 1, 0, 0], "math500": [1, 0]}),
               "cft-seed0": run({"gsm8k": [0, 1, 0, 0], "math500": [0, 0]}),
               "cgd-seed1": run({"gsm8k": [1, 1, 1, 0], "math500": [0, 0]}),
               "cft-seed1": run({"gsm8k": [1, 1, 1, 1], "math500": [0, 0]}),
               "cgd_no_critique-seed0": run({"gsm8k": [1, 1, 0, 0], "math500": [1, 0]})}
    out = evaluation.compare_methods(samples, cfg.eval, seeds=[0, 1], seed=0)
    cft = out["cgd_minus_cft"]
    assert cft["seeds"] == [0, 1]
    assert cft["per_seed"]["0"]["gsm8k"]["diff"] == 25.0 and cft["per_seed"]["1"]["gsm8k"]["diff"] == -25.0
    assert cft["pooled"]["gsm8k"]["n"] == 8 and cft["pooled"]["gsm8k"]["diff"] == 0.0
    assert (cft["pooled"]["gsm8k"]["wins"], cft["pooled"]["gsm8k"]["losses"]) == (1, 1)
    assert cft["pooled"]["math500"]["diff"] == 25.0
    assert cft["pooled"]["avg_group1"]["diff"] == 12.5  # (0 + 25) / 2: benchmarks weigh equally
    critique = out["cgd_minus_cgd_no_critique"]
    assert critique["seeds"] == [0] and critique["pooled"]["gsm8k"]["diff"] == 0.0


def test_the_task_manager_indexes_only_the_folders_a_run_needs():
    """lm-eval's full index (~10k task files) cost 18 s per evaluation on 2 cores; a run needs the
    folders that define its tasks, then eval.general.include_path, whose tasks win."""
    tm = general.task_manager(["truthfulqa_mc2", "leaderboard_musr"], None)
    assert {"truthfulqa_mc2", "leaderboard_musr", "leaderboard_musr_team_allocation"} <= set(tm.task_index)
    assert len(tm.task_index) < 500  # the two folders, not all of lm-eval
    local = general.task_manager(["cgd_local_group"], "tests/fixtures/lm_eval_tasks")
    assert "cgd_local_group" in local.task_index and "truthfulqa_mc2" not in local.task_index
    # a name not found by its task:/group: line (a tag) gets the full index
    assert len(general.task_manager(["truthfulqa"], None).task_index) > 1000
