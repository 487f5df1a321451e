"""HumanEval through lm-eval: model-written code runs only when params allow it, each program in its
own process under time and memory limits, graded by the unbiased pass@k estimate."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cgd import config as P
from cgd.evaluation import code_exec, general

REPO = Path(__file__).resolve().parents[1]
FIXTURE = "tests/fixtures/lm_eval_tasks"
LIMITS = code_exec.Limits(timeout_s=5, memory_mb=512)


def _problems() -> list[dict]:
    return [json.loads(line) for line in (REPO / FIXTURE / "humaneval_local.jsonl").read_text().splitlines()]


def test_nothing_runs_unless_allowed():
    with pytest.raises(code_exec.CodeExecutionRefused, match="eval.general.code_execution.enabled"):
        code_exec.run("print(1)")
    with code_exec.allowed(LIMITS):
        assert code_exec.run("pass")["passed"]
    with pytest.raises(code_exec.CodeExecutionRefused):  # allowed only inside the block
        code_exec.run("pass")


def test_the_canonical_solutions_pass_and_wrong_ones_fail():
    problems = _problems()
    with code_exec.allowed(LIMITS):
        for p in problems:
            tests = f"{p['test']}\ncheck({p['entry_point']})"
            right = p["prompt"] + p["canonical_solution"]
            wrong = p["prompt"] + "    return None\n"
            assert code_exec.score([tests], [[right]]) == {"pass@1": 1.0}
            assert code_exec.score([tests], [[wrong]]) == {"pass@1": 0.0}
            assert code_exec.score([tests], [[right, wrong, wrong, right]], k=[1, 2]) == \
                {"pass@1": 0.5, "pass@2": 1 - 1 / 6}


def test_limits_stop_a_loop_and_a_memory_hog():
    with code_exec.allowed(code_exec.Limits(timeout_s=1, memory_mb=256)):
        start = time.perf_counter()
        looped = code_exec.run("while True:\n    pass\n")
        assert looped == {"passed": False, "reason": "timeout", "returncode": None}
        assert time.perf_counter() - start < 4
        hog = code_exec.run("x = bytearray(1 << 30)\n")  # 1 GiB under a 256 MiB cap: MemoryError
        assert hog["reason"] == "failed" and hog["returncode"] != 0
        assert code_exec.run("import os\nassert os.environ == {} or set(os.environ) <= {'LC_CTYPE'}\n")["passed"]


def test_a_program_runs_in_an_empty_folder_of_its_own(tmp_path):
    with code_exec.allowed(LIMITS):
        marker = tmp_path / "written"
        assert code_exec.run(f"import os\nassert os.listdir('.') == ['program.py']\nopen({str(marker)!r}, 'w')\n")["passed"]
    assert marker.exists()


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 2), (10, 3, 5), (4, 4, 2)])
def test_pass_at_k_is_the_unbiased_estimate(n, c, k):
    assert code_exec.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_a_code_suite_is_refused_unless_enabled_and_must_be_graded_here(raw_params):
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml").eval.general
    on = replace(cfg, tasks={"cgd_humaneval_instruct": "pass@1,create_test"})
    manager = general.task_manager(list(on.tasks), None)
    assert general.code_tasks(manager, list(on.tasks)) == ["cgd_humaneval_instruct"]
    with pytest.raises(P.ParamsError, match="eval.general.code_execution.enabled"):
        general.preflight(on)
    enabled = replace(on, code_execution=replace(on.code_execution, enabled=True))
    general.preflight(enabled)
    # lm-eval's own task grades through HF evaluate's code_eval (from the hub, no memory limit)
    theirs = replace(enabled, tasks={"humaneval": "pass@1,create_test"})
    with pytest.raises(P.ParamsError, match="eval.general.tasks.*cgd_humaneval"):
        general.preflight(theirs)
    safe = replace(cfg, tasks={"cgd_local_mc": "acc,none"}, include_path="tests/fixtures/lm_eval_tasks")
    assert general.code_tasks(general.task_manager(["cgd_local_mc"], safe.include_path), ["cgd_local_mc"]) == []


def test_the_param_is_off_in_the_demo(raw_params):
    assert raw_params["eval"]["general"]["code_execution"]["enabled"] is False
    with pytest.raises(P.ParamsError, match="code_execution.timeout_s"):
        P.from_dict(P.apply_overrides(raw_params, {"eval.general.code_execution.timeout_s": 0}), REPO / "dvc.yaml")


@pytest.mark.slow
def test_humaneval_through_lm_eval_runs_each_program_here(tiny_model, monkeypatch, capsys):
    cfg = P.load("params.yaml", {"student.model": str(tiny_model)})
    gcfg = replace(cfg.eval.general, tasks={"cgd_humaneval_local": "pass@1,create_test"}, include_path=FIXTURE,
                   batch_size=2)
    with pytest.raises(P.ParamsError, match="code_execution.enabled"):  # before any model loads
        general.run(str(tiny_model), gcfg, cfg.student, seed=0, dtype="float32", device="cpu")
    ran = []
    real = code_exec.run
    monkeypatch.setattr(code_exec, "run", lambda program: ran.append(program) or real(program))
    enabled = replace(gcfg, code_execution=replace(gcfg.code_execution, enabled=True, timeout_s=5))
    out = general.run(str(tiny_model), enabled, cfg.student, seed=0, dtype="float32", device="cpu")
    assert "execute model-written code" in capsys.readouterr().out
    assert out["cgd_humaneval_local"]["docs"] == 2 and 0 <= out["cgd_humaneval_local"]["value"] <= 100
    problems = _problems()
    assert len(ran) == 2 and all(p["prompt"] in prog and f"check({p['entry_point']})" in prog
                                 for p, prog in zip(problems, ran))


def test_the_server_model_sends_at_most_four_stop_strings_and_cuts_the_rest(monkeypatch):
    """vLLM's server refuses more than 4 stop strings; HumanEval's task has 5 and lm-eval adds EOS."""
    import requests

    from cgd.evaluation import lmeval_server
    from cgd.generation.vllm_client import SERVER_STOP_STRINGS

    sent = []

    class Reply:
        ok = True

        def raise_for_status(self):
            pass

        def json(self):
            return {"choices": [{"index": 0, "text": "    return a + b\nprint(add(1, 2))\n<eos>junk"}]}

    monkeypatch.setattr(requests, "post", lambda url, json, **kw: sent.append(json) or Reply())
    lm = lmeval_server.ServerCompletions(base_url="http://127.0.0.1:1/v1/completions", model="m",
                                         tokenizer_backend=None, tokenized_requests=False)
    monkeypatch.setattr(type(lm), "eos_string", property(lambda self: "<eos>"))
    until = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    out = lm.model_call(["def add(a, b):\n"], generate=True, gen_kwargs={"until": until, "max_gen_toks": 16})
    assert sent[0]["stop"] == until[:SERVER_STOP_STRINGS] and len(sent[0]["stop"]) == 4
    assert out["choices"][0]["text"] == "    return a + b"  # cut at "\nprint", the fifth


def test_a_local_task_including_another_copy_of_cgd_s_tasks_is_graded_here(tmp_path, raw_params):
    """A rehearsal's local task includes the rehearsing checkout's copy of cgd's task files while its
    stages import the scratch copy's cgd (found by rehearsing llama8b-webinstruct): still cgd's grading."""
    import shutil

    copy = tmp_path / "elsewhere" / "lm_eval_tasks"
    shutil.copytree(general.TASKS_DIR, copy)
    local = tmp_path / "local"
    local.mkdir()
    (local / "cgd_humaneval_instruct.yaml").write_text(
        f"include: {copy / 'cgd_humaneval_instruct.yaml'}\ntask: cgd_humaneval_instruct\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {REPO / FIXTURE / 'humaneval_local.jsonl'}\n")
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml").eval.general
    on = replace(cfg, tasks={"cgd_humaneval_instruct": "pass@1,create_test"}, include_path=str(local),
                 code_execution=replace(cfg.code_execution, enabled=True))
    manager = general.task_manager(list(on.tasks), on.include_path)
    assert str(copy) in str(manager.task_index["cgd_humaneval_instruct"].cfg["metric_list"][0]["metric"])
    assert general.check_code_execution(on, manager) == ["cgd_humaneval_instruct"]
