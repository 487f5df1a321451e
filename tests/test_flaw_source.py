"""The flaw-source ablation (beyond the paper): rollout.model, the ablation's params, its two DVC
stages' wiring, the stage-07 table, and (slow) two sources end to end through `dvc repro` on
stand-in models, the same students the rehearsal uses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cgd import config as P
from cgd.evaluation import evaluate as evaluation
from cgd.experiments import sweeps
from cgd.reporting import figures, points, tables
from cgd.runtime.io import read_json, read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def _with(raw: dict, **dotted) -> dict:
    return P.apply_overrides(raw, {k.replace("__", "."): v for k, v in dotted.items()})


# ---------------------------------------------------------------- params


def test_rollout_model_is_the_student_but_for_the_keys_it_sets(raw_params):
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml")
    assert cfg.rollout.model is None and P.role_model(cfg, "rollout") is cfg.student
    assert P.role_key(cfg, "rollout") == "student"
    cfg = P.from_dict(_with(raw_params, rollout__model={"model": "org/Small-1B", "dtype": "float32"}), REPO / "dvc.yaml")
    author = P.role_model(cfg, "rollout")
    assert (author.model, author.dtype) == ("org/Small-1B", "float32")
    assert author.max_model_len == cfg.student.max_model_len and author.kv_cache_gib == cfg.student.kv_cache_gib
    assert P.role_key(cfg, "rollout") == "rollout.model"


@pytest.mark.parametrize("over, match", [
    ({"rollout.model": {"modle": "x"}}, r"'rollout.model.modle' is not a known key.*did you mean 'model'"),
    ({"rollout.model": {"dtype": "f16"}}, r"'rollout.model.dtype' is 'f16'"),
    ({"rollout.model": {}}, r"'rollout.model' is an empty mapping"),
    ({"rollout.model": {"model": "models/missing"}}, r"'rollout.model.model' points to 'models/missing'"),
    ({"rollout.model": {"model": "cgd"}}, r"'rollout.model.model' points to 'cgd', which has no config.json"),
    ({"rollout.model": {"model": "org/x", "data_parallel_size": 2}},
     r"'rollout.model.data_parallel_size' is 2, but rollout.backend is vllm"),
    ({"ablations.flaw_source.sources": {"s": {"model": "models/nope"}}},
     r"'ablations.flaw_source.sources.s.model' points to 'models/nope'"),
    ({"ablations.flaw_source.sources": {"s": {"model": "cgd"}}},  # a folder, but no model in it
     r"'ablations.flaw_source.sources.s.model' points to 'cgd', which has no config.json"),
    ({"ablations.flaw_source.sources": {"s": {"model": "org/x", "data_parallel_size": 2}}},
     r"'ablations.flaw_source.sources.s.data_parallel_size' is 2, but rollout.backend is vllm"),
    ({"ablations.flaw_source.sources": {"s": {"foo": 1}}}, r"'ablations.flaw_source.sources.s.foo' is not a known key"),
    ({"ablations.flaw_source.sources": {"s": {"dtype": "f16"}}}, r"'ablations.flaw_source.sources.s.dtype' is 'f16'"),
    ({"ablations.flaw_source.sources": {"s": {}}}, r"'ablations.flaw_source.sources.s' is \{\}"),
    ({"ablations.flaw_source.sources": {"student": {"model": "org/x"}}}, r"'student' is the main run"),
    ({"ablations.flaw_source.sources": {"llama3.2-3b": {"model": "org/x"}}}, r"DVC reads a '\.' there"),
    ({"ablations.flaw_source.sources": {"s": {"model": "org/x"}}, "ablations.flaw_source.methods": ["sft"]},
     r"lists sft, which trains on the reference solutions"),
    ({"ablations.flaw_source.sources": {"s": {"model": "org/x"}}, "ablations.flaw_source.methods": []},
     r"'ablations.flaw_source.methods' is empty"),
    ({"ablations.flaw_source.sources": {"s": {"model": "org/x"}}, "train.methods": ["cgd"],
      "ablations.flaw_source.methods": ["cft"]}, r"lists cft, which train.methods lacks"),
    ({"ablations.flaw_source.sources": {"s": {"model": "org/x"}}, "rollout.model": {"model": "org/y"}},
     r"'rollout.model' is set while ablations.flaw_source.sources is on"),
])
def test_params_errors_name_the_key(raw_params, over, match):
    with pytest.raises(P.ParamsError, match=match):
        P.from_dict(P.apply_overrides(raw_params, over), REPO / "dvc.yaml")


def test_a_source_the_backend_can_load_is_accepted(raw_params, tiny_model):
    raw = _with(raw_params, ablations__flaw_source__sources={"tiny": {"model": str(tiny_model)},
                                                             "hub": {"model": "meta-llama/Llama-3.2-3B-Instruct"}})
    assert list(P.from_dict(raw, REPO / "dvc.yaml").ablations.flaw_source.sources) == ["tiny", "hub"]


# ---------------------------------------------------------------- points


def test_a_source_becomes_rollout_model_and_an_unknown_one_names_the_fix(raw_params, tmp_path):
    raw = _with(raw_params, ablations__flaw_source__sources={"small": {"model": "org/Small-1B"}})
    overrides, bare = sweeps.resolve({"flaw_source": "small", "method": "cgd", "seed": 0}, raw)
    assert overrides == {"rollout.model": {"model": "org/Small-1B"}, "ablations.flaw_source.sources": {}}
    assert bare == {"method": "cgd", "seed": 0}
    with pytest.raises(P.ParamsError, match="'ablations.flaw_source.sources' has no source named 'nope'.*small"):
        sweeps.resolve({"flaw_source": "nope"}, raw)
    # stages 02-04 of a source: the main run's questions in, every file into the point
    steps = sweeps.plan(sweeps.ABLATIONS["flaw_source_data"].chain, {"flaw_source": "small"}, tmp_path,
                        "params.yaml", raw)
    by = {s.name: s.parameters for s in steps}
    assert by["02_rollout"]["in_file"] == "data/01_sample/train.jsonl"
    assert by["03_critique"]["in_file"] == by["02_rollout"]["out_dir"] + "/rollouts.jsonl"
    assert by["04_refine"]["out_dir"].startswith(str(tmp_path))
    assert all(p["overrides"]["rollout.model"] == {"model": "org/Small-1B"} for p in by.values())
    point_cfg = P.from_dict(P.apply_overrides(raw, by["02_rollout"]["overrides"]), REPO / "dvc.yaml")
    assert point_cfg.rollout.model.model == "org/Small-1B"  # valid params inside the point
    # a trained point reads the source's rows and grades into the folder stage 07 pairs from
    data_file = str(tmp_path / "s/data/04_refine/cgd_data.jsonl")
    steps = sweeps.plan(sweeps.ABLATIONS["flaw_source"].chain, {"flaw_source": "small", "method": "cgd", "seed": 0,
                        "data_file": data_file}, tmp_path / "p", "params.yaml", raw, eval_dir="data/06_eval/flaw_source/x")
    by = {s.name: s.parameters for s in steps}
    assert by["05_train"]["data_file"] == data_file and by["06_eval"]["out_dir"] == "data/06_eval/flaw_source/x"


def test_only_the_current_sources_points_are_read(raw_params):
    spec = {"model": "org/Small-1B"}
    cfg = P.from_dict(_with(raw_params, ablations__flaw_source__sources={"small": spec}), REPO / "dvc.yaml")

    def point(ablation, values, overrides):
        return {"ablation": ablation, "values": values, "overrides": overrides, "chain": [], "fingerprint": "", "eval": {}}

    trained = {"flaw_source": "small", "method": "cgd", "seed": 0}
    assert points.is_current(point("flaw_source_data", {"flaw_source": "small"}, {"rollout.model": spec}), cfg)
    assert points.is_current(point("flaw_source", trained, {"rollout.model": spec, "eval.general.tasks": {}}), cfg)
    assert not points.is_current(point("flaw_source", {**trained, "seed": 9}, {"rollout.model": spec}), cfg)
    assert not points.is_current(point("flaw_source", {**trained, "method": "cft"}, {"rollout.model": spec}), cfg)
    assert not points.is_current(point("flaw_source", trained, {"rollout.model": {"model": "org/Other"}}), cfg)
    assert not points.is_current(point("flaw_source_data", {"flaw_source": "gone"}, {"rollout.model": spec}), cfg)


# ---------------------------------------------------------------- the stage-07 table


def _samples(correct: list[int], bench: str = "gsm8k") -> list[dict]:
    return [{"benchmark": bench, "mode": "greedy", "problem_id": f"{bench}/{i}", "correct": bool(c)} for i, c in enumerate(correct)]


def test_the_table_sets_each_source_beside_the_students_own_with_the_paired_difference(raw_params):
    cfg = P.from_dict(_with(raw_params, eval__benchmarks={"gsm8k": None}, eval__bootstrap_resamples=200), REPO / "dvc.yaml")
    own = [1, 1, 0, 1, 0, 1, 1, 0]
    other = [0, 1, 0, 0, 0, 1, 0, 0]
    paired = evaluation.compare_runs({0: _samples(other)}, {0: _samples(own)}, cfg.eval, cfg.seed)["pooled"]
    assert paired["gsm8k"]["diff"] == pytest.approx(-37.5)
    acc = lambda m: {"benchmarks": {"gsm8k": {"group": 1, "accuracy": {"mean": m, "ci_low": m - 5, "ci_high": m + 5}}}}
    data = {tables.OWN: {"incorrect_yprime": 40.0, "critique_accuracy": 80.0, "train_rows": 12},
            "small": {"incorrect_yprime": 90.0, "critique_accuracy": 60.0, "train_rows": 20}}
    columns, rows = tables.flaw_source_table(["cgd"], {"cgd-seed0": acc(62.5)}, {"small": {"cgd-seed0": acc(25.0)}},
                                             data, {"small": {"cgd": paired}}, ["gsm8k"])
    assert columns == ["gsm8k", "avg_group1", *tables.FLAW_DATA_COLUMNS]  # the evaluated benchmarks, then the data
    assert list(rows) == ["cgd@yprime=student", "cgd@yprime=small", "delta_cgd@yprime=small"]
    assert rows["cgd@yprime=student"]["gsm8k"].run == 62.5 and rows["cgd@yprime=small"]["gsm8k"].run == 25.0
    delta = rows["delta_cgd@yprime=small"]["gsm8k"]
    assert delta.run == -37.5 and delta.p_value == paired["gsm8k"]["p_value"] and delta.ci_low <= -37.5 <= delta.ci_high
    # a group's average: the plain mean of its evaluated benchmarks, the paired difference's own average
    assert rows["cgd@yprime=small"]["avg_group1"].run == 25.0
    assert rows["delta_cgd@yprime=small"]["avg_group1"].run == round(paired["avg_group1"]["diff"], 1)
    assert rows["cgd@yprime=small"]["train_rows"].text() == "20" and rows["cgd@yprime=student"]["incorrect_yprime"].run == 40.0
    assert rows["delta_cgd@yprime=small"]["train_rows"].text() == "—"
    assert tables.method_title("delta_cgd@yprime=small") == "Δ CGD: y′ by small − by the student (paired)"
    assert tables.method_title("cgd@yprime=student") == "CGD (y′ by the student itself)"
    three = {"benchmarks": {b: {"accuracy": {"mean": v, "ci_low": None, "ci_high": None}}
                            for b, v in (("math500", 10.0), ("gsm8k", 30.0), ("theoremqa", 5.0))}}
    columns3, rows3 = tables.flaw_source_table(["cgd"], {"cgd-seed0": three}, {}, {}, {}, ["gsm8k", "theoremqa", "math500"])
    assert columns3[:5] == ["math500", "gsm8k", "avg_group1", "theoremqa", "avg_group2"]  # Table 1's order
    assert rows3["cgd@yprime=student"]["avg_group1"].run == 20.0 and rows3["cgd@yprime=student"]["avg_group2"].run == 5.0
    fig = figures.flaw_source_plot(rows, ["cgd"], ["small"], "test")
    assert figures.empty_panels(fig) == []


def test_stats_come_from_the_stage_reports():
    stats = tables.flaw_source_stats({"student_verifiable": 20, "student_correct": 5}, {"critique_accuracy": 0.8125},
                                     {"mixture": {"in_mixture": 14}})
    assert stats == {"incorrect_yprime": 75.0, "critique_accuracy": 81.2, "train_rows": 14}
    assert tables.flaw_source_stats({"student_verifiable": 0}, {}, {})["incorrect_yprime"] is None


# ---------------------------------------------------------------- slow: two sources through dvc repro


QUESTIONS = [("Tom has 3 apples and buys 4 more. How many apples does he have?", "3 + 4 = 7", "7"),
             ("A box holds 6 pens. How many pens are in 5 boxes?", "6 * 5 = 30", "30"),
             ("Sara had 20 stickers and gave away 8. How many are left?", "20 - 8 = 12", "12"),
             ("A train travels 40 miles each hour for 3 hours. How far does it go?", "40 * 3 = 120", "120"),
             ("There are 9 birds and 5 fly away. How many birds remain?", "9 - 5 = 4", "4"),
             ("Each of 7 kids has 2 balloons. How many balloons are there?", "7 * 2 = 14", "14"),
             ("Mia reads 12 pages a day for 4 days. How many pages does she read?", "12 * 4 = 48", "48"),
             ("A shop sells 15 cakes in the morning and 9 in the evening. How many cakes in all?", "15 + 9 = 24", "24")]
Y_PRIME_KEYS = ("student_", "verifier_correct", "rollout_status", "rollout_finish_reason", "rollout_error",
                "rollout_tokens", "critique", "conclusion", "refine", "refined_", "status", "in_mixture",
                "overall_status")


@pytest.fixture(scope="module")
def standin_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The rehearsal's stand-ins for a student (Llama-3.1-8B-Instruct's shape) and a smaller model of
    its family (Llama-3.2-3B-Instruct's), trained on these questions: both write boxed answers."""
    from cgd.rehearsal import standins

    root = tmp_path_factory.mktemp("standins")
    qs = [q for q, _, _ in QUESTIONS]
    student = root / "student"
    standins.build("meta-llama/Llama-3.1-8B-Instruct", student, qs)
    small = root / "small"
    standins.build("meta-llama/Llama-3.2-3B-Instruct", small, qs, seed=1)
    return student, small


@pytest.mark.slow
def test_two_flaw_sources_end_to_end_through_dvc(tmp_path, standin_pair, raw_params, monkeypatch):
    """The student's own rollouts (the main run) and a smaller model's, through stages 02-07: the
    rows differ only in y' and what follows from it, and the table's cells equal the metrics."""
    import shutil

    from tests.test_sweeps import _tiny_params, checkout_copy

    student, small = standin_pair
    repo = checkout_copy(tmp_path / "repo")
    shutil.copytree(student, repo / "models/smollm2-135m-instruct")  # the embedded student's place
    shutil.copytree(small, repo / "models/small-3b")
    train = [{"id": f"q{i}", "question": q, "reference_solution": f"{sol}\n#### {ans}", "reference_answer": ans,
              "source": "gsm8k"} for i, (q, sol, ans) in enumerate(QUESTIONS)]  # stage 01's schema
    write_jsonl(repo / "data/01_sample/train.jsonl", train)
    raw = _tiny_params(raw_params, "models/smollm2-135m-instruct")
    for stage in ("rollout", "critique", "refine"):
        raw[stage].update(max_new_tokens=48, batch_size=4)
    raw["critique"]["conclusion_followup"] = True
    raw["train"].update(methods=["cgd"], seeds=[0], lr=1e-3)
    raw["eval"]["benchmarks"] = {"gsm8k": 4}
    raw["ablations"]["flaw_source"] = {"methods": ["cgd"], "sources": {"small": {"model": "models/small-3b"}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)  # DVCLive in a stage needs a commit
    subprocess.run([*git, "commit", "-qm", "test"], cwd=repo, check=True)
    stages = ["rollout", "critique", "refine", "cft_data", "train@cgd-0", "eval_base", "eval@cgd-0",
              "flaw_source_data@small", "ablate_flaw_source@small-cgd-0", "figures"]
    done = subprocess.run([str(Path(venv_bin) / "dvc"), "repro", "--single-item", *stages], cwd=repo,
                          capture_output=True, text=True, timeout=1500, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]

    # The same questions, prompts and teacher; only who wrote y' (and what follows from it) differs.
    point = repo / "sweeps/flaw_source/small/stages02-04"
    own_report, src_report = read_json(repo / "metrics/02_rollout.json"), read_json(point / "metrics/02_rollout.json")
    assert own_report["author"] == "models/smollm2-135m-instruct" and src_report["author"] == "models/small-3b"
    for stage, file in (("02_rollout", "rollouts.jsonl"), ("03_critique", "critiques.jsonl"), ("04_refine", "cgd_data.jsonl")):
        mine = list(read_jsonl(repo / f"data/{stage}/{file}"))
        theirs = list(read_jsonl(point / f"data/{stage}/{file}"))
        assert [r["id"] for r in mine] == [r["id"] for r in theirs] == [r["id"] for r in train]
        for a, b in zip(mine, theirs):
            assert set(a) == set(b)
            differ = {k for k in a if json.dumps(a[k]) != json.dumps(b[k])}
            assert all(k.startswith(Y_PRIME_KEYS) for k in differ), (stage, differ)
            assert {k: a[k] for k in train[0]} == {k: b[k] for k in train[0]}  # x and the reference, byte for byte
        if stage == "02_rollout":
            assert any(a["student_answer"] != b["student_answer"] for a, b in zip(mine, theirs))
    for stage in ("03_critique", "04_refine"):
        a, b = read_json(repo / f"metrics/{stage}.json"), read_json(point / f"metrics/{stage}.json")
        assert a["backend"] == b["backend"] and a["provenance"]["models"] == b["provenance"]["models"]  # the same teacher

    # Stage 07: every cell of the table from the metrics it read.
    with open(repo / "figures/flaw_source.csv") as fh:
        cells = {(r["method"], r["column"]): r for r in csv.DictReader(fh)}
    num = lambda s: None if s == "" else float(s)
    own_eval = read_json(repo / "metrics/eval/cgd-seed0.json")["benchmarks"]["gsm8k"]["accuracy"]
    src_point = read_json(repo / "metrics/ablations/flaw_source/small/cgd-seed0.json")
    src_eval = src_point["eval"]["06_eval"]["benchmarks"]["gsm8k"]["accuracy"]
    for row, acc in (("cgd@yprime=student", own_eval), ("cgd@yprime=small", src_eval)):
        assert num(cells[(row, "gsm8k")]["run"]) == round(acc["mean"], 1)
        assert num(cells[(row, "gsm8k")]["ci_low"]) == (None if acc["ci_low"] is None else round(acc["ci_low"], 1))
    monkeypatch.chdir(repo)  # the params name the repo's model folders
    cfg = P.load("params.yaml")
    pair = evaluation.compare_runs({0: list(read_jsonl(repo / "data/06_eval/flaw_source/small-cgd-seed0/samples.jsonl"))},
                                   {0: list(read_jsonl(repo / "data/06_eval/cgd-seed0/samples.jsonl"))},
                                   cfg.eval, cfg.seed)["pooled"]["gsm8k"]
    delta = cells[("delta_cgd@yprime=small", "gsm8k")]
    assert num(delta["run"]) == round(pair["diff"], 1) and num(delta["p_value"]) == pytest.approx(pair["p_value"])
    own_stats = tables.flaw_source_stats(*(read_json(repo / f"metrics/{s}.json") for s in ("02_rollout", "03_critique", "04_refine")))
    data_point = read_json(repo / "metrics/ablations/flaw_source/small/stages02-04.json")
    src_stats = tables.flaw_source_stats(*(data_point["data"][s] for s in ("02_rollout", "03_critique", "04_refine")))
    for row, stats in (("cgd@yprime=student", own_stats), ("cgd@yprime=small", src_stats)):
        for col in tables.FLAW_DATA_COLUMNS:
            assert num(cells[(row, col)]["run"]) == stats[col], (row, col)
    assert 0 < src_point["train"]["records"] <= src_stats["train_rows"]  # CGD trained on the source's mixture
    index = (repo / "figures/INDEX.md").read_text()
    assert "| Flaw sources (beyond the paper) | `figures/flaw_source.md`" in index and "done: 1 source(s)" in index
    assert (repo / "figures/flaw_source.png").exists()


def test_the_rollout_role_s_server_command_serves_its_author(raw_params, tmp_path, capsys):
    """`python -m cgd server-command --role rollout`: what stage 02 starts (backend vllm_server) for
    rollout.model, or for the student where it is null; its errors name rollout.model's keys."""
    import shutil

    from cgd.__main__ import main

    shutil.copy(REPO / "dvc.yaml", tmp_path)  # the embedded model is one of the pipeline's outputs
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params))
    assert main(["server-command", "--params", str(params), "--role", "rollout", "--cpu"]) == 0
    own = capsys.readouterr().out
    assert "serve models/smollm2-135m-instruct --served-model-name student" in own
    raw = _with(raw_params, rollout__model={"model": "org/Small-1B", "data_parallel_size": 4, "nodes": 2,
                                            "head_address": "$CGD_TEST_UNSET_HEAD"}, rollout__backend="vllm_server")
    params.write_text(yaml.safe_dump(raw))
    assert main(["server-command", "--params", str(params), "--role", "rollout"]) == 2
    assert "rollout.model.head_address" in capsys.readouterr().err
    os.environ["CGD_TEST_UNSET_HEAD"] = "10.0.0.7"
    try:
        assert main(["server-command", "--params", str(params), "--role", "rollout"]) == 0
    finally:
        del os.environ["CGD_TEST_UNSET_HEAD"]
    argv = capsys.readouterr().out
    assert "serve org/Small-1B --served-model-name rollout" in argv and "--data-parallel-size 4" in argv
