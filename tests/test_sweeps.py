"""Ablations and sweeps: grids, the wiring of a point's notebooks, skipping and resuming, the
points the figures stage reads, and (slow) a two-point learning-rate sweep on the tiny model both
through DVC and through the papermill sweep command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cgd import config as P
from cgd.experiments import sweeps
from cgd.reporting import points as read_points
from cgd.reporting import tables
from cgd.runtime.io import read_json, write_json, write_jsonl

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- grids and names


def test_parse_grid_and_values():
    grid = sweeps.parse_assignments(["method=cgd,cft", "train.lr=1e-6,5.0e-6"], many=True)
    assert grid == {"method": ["cgd", "cft"], "train.lr": [1e-6, 5e-6]}
    assert isinstance(grid["train.lr"][0], float)  # YAML alone reads 1e-6 as a string
    assert sweeps.parse_assignments(["seed=0", "refine.label_source=critique"]) == {
        "seed": 0, "refine.label_source": "critique"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        sweeps.parse_assignments(["train.lr"])
    with pytest.raises(ValueError, match="twice"):
        sweeps.parse_assignments(["seed=0", "seed=1"])


def test_expand_is_the_product_in_order_and_names_are_folders():
    points = sweeps.expand({"method": ["cgd", "cft"], "train.lr": [1e-6, 5e-6]})
    assert [(p["method"], p["train.lr"]) for p in points] == [
        ("cgd", 1e-6), ("cgd", 5e-6), ("cft", 1e-6), ("cft", 5e-6)]
    assert sweeps.point_name({"method": "cgd", "train.lr": 5e-6, "seed": 0}) == "method=cgd,train.lr=5e-06,seed=0"
    assert "/" not in sweeps.point_name({"teacher.model": "org/name"})


# ---------------------------------------------------------------- planning


def _raw(**ablation_teachers):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ablations"]["teacher"]["teachers"] = ablation_teachers
    return raw


def test_plan_wires_each_step_to_the_previous_ones_output(tmp_path):
    raw = _raw(big={"teacher.model": "org/Big-70B", "critique.temperature": 0.2})
    steps = sweeps.plan(["03_critique", "04_refine", "05_train", "06_eval"],
                        {"teacher": "big", "method": "cgd", "seed": 1}, tmp_path, "params.yaml", raw)
    by = {s.label: s.parameters for s in steps}
    assert list(by) == ["03_critique", "04_refine", "05_train", "06_eval"]
    assert by["03_critique"]["in_file"] == "data/02_rollout/rollouts.jsonl"  # the pipeline's
    assert by["04_refine"]["in_file"] == str(tmp_path / "data/03_critique/critiques.jsonl")
    assert by["05_train"]["data_file"] == str(tmp_path / "data/04_refine/cgd_data.jsonl")
    assert (by["05_train"]["method"], by["05_train"]["seed"]) == ("cgd", 1)
    assert by["06_eval"]["model"] == "cgd-seed1" and by["06_eval"]["model_path"] == str(tmp_path / "model")
    for p in by.values():  # the teacher's name became its overrides, in every notebook
        assert p["overrides"] == {"teacher.model": "org/Big-70B", "critique.temperature": 0.2}
        assert p["params_file"] == "params.yaml"


def test_plan_evaluates_every_epoch_and_the_mixture_feeds_training(tmp_path):
    raw = _raw()
    steps = sweeps.plan(["mixture", "05_train", "06_eval"],
                        {"method": "cgd", "seed": 0, "train.epochs": 3}, tmp_path, "params.yaml", raw,
                        every_epoch=True)
    labels = [s.label for s in steps]
    assert labels == ["mixture", "05_train", "06_eval-epoch1", "06_eval-epoch2", "06_eval-epoch3"]
    assert steps[0].parameters["in_file"] == "data/04_refine/cgd_data.jsonl"
    assert steps[1].parameters["data_file"] == steps[0].parameters["out_file"]
    assert steps[1].parameters["snapshot_dir"] == str(tmp_path / "epochs")
    assert [s.parameters["model_path"] for s in steps[2:]] == [
        str(tmp_path / "epochs/epoch1"), str(tmp_path / "epochs/epoch2"), str(tmp_path / "model")]
    assert [s.epoch for s in steps[2:]] == [1, 2, 3]


def test_plan_errors_name_the_fix(tmp_path):
    raw = _raw()
    with pytest.raises(ValueError, match="needs 'seed'"):
        sweeps.plan(["05_train"], {"method": "cgd"}, tmp_path, "params.yaml", raw)
    with pytest.raises(ValueError, match="unknown step"):
        sweeps.plan(["05_training"], {"method": "cgd"}, tmp_path, "params.yaml", raw)
    with pytest.raises(P.ParamsError, match="no teacher named 'nope'"):
        sweeps.plan(["03_critique"], {"teacher": "nope"}, tmp_path, "params.yaml", raw)


def test_bare_values_reach_the_notebooks_that_declare_them(tmp_path):
    steps = sweeps.plan(["05_train", "06_eval"], {"method": "cft", "seed": 0, "base_samples": "b.jsonl"},
                        tmp_path, "params.yaml", _raw())
    assert steps[1].parameters["base_samples"] == "b.jsonl"
    assert "base_samples" not in steps[0].parameters


# ---------------------------------------------------------------- running, skipping, resuming


class FakeNotebooks:
    """Stands in for papermill: records each call and writes the files the real notebooks write.
    `interrupt_at` raises KeyboardInterrupt (Ctrl-C) when that call number starts."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, name, out, parameters, kernel):
        if self.interrupt_at is not None and len(self.calls) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append((name, parameters))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("{}")
        if name == "05_train":
            write_json(Path(parameters["live_dir"]) / "metrics.json",
                       {"method": parameters["method"], "seed": parameters["seed"], "train_loss": 1.5})
        elif name == "06_eval":
            lr = parameters["overrides"].get("train.lr", 0)
            write_json(parameters["metrics_file"], {"model": parameters["model"], "groups": {}, "benchmarks": {
                "gsm8k": {"group": 1, "accuracy": {"mean": 1e6 * lr, "ci_low": 0.0, "ci_high": 50.0}}}})


def test_sweep_skips_done_points_and_resumes_an_interrupted_one(tmp_path):
    grid = {"train.lr": [1e-6, 5e-6]}
    fixed = {"method": "cgd", "seed": 0}
    interrupted = FakeNotebooks(interrupt_at=4)  # point 1: train, eval; point 2: train, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep(tmp_path, ["05_train", "06_eval"], grid, fixed, ablation="lr", execute=interrupted)
    summary = (tmp_path / "summary.csv").read_text()
    assert "done" in summary and "5e-06" not in summary  # the finished point is already summarized

    again = FakeNotebooks()
    frame = sweeps.sweep(tmp_path, ["05_train", "06_eval"], grid, fixed, ablation="lr", execute=again)
    # Point 1 is skipped whole; point 2 resumes at its evaluation (its training had finished).
    assert [name for name, _ in again.calls] == ["06_eval"]
    assert again.calls[0][1]["overrides"] == {"train.lr": 5e-6}
    assert list(frame.status) == ["skipped", "done"]
    assert list(frame.gsm8k) == [1.0, 5.0] and list(frame["train.lr"]) == [1e-6, 5e-6]
    points = read_points.load_points(tmp_path)
    assert sorted(p["values"]["train.lr"] for p in points) == [1e-6, 5e-6]
    assert all(p["ablation"] == "lr" and p["train"]["train_loss"] == 1.5 for p in points)

    third = FakeNotebooks()
    sweeps.sweep(tmp_path, ["05_train", "06_eval"], grid, fixed, ablation="lr", execute=third)
    assert third.calls == []


def test_a_point_reruns_when_its_params_change(tmp_path):
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params.write_text(yaml.safe_dump(raw))
    shutil.copy(REPO / "dvc.yaml", tmp_path)  # validation accepts the models the pipeline would build
    values = {"method": "cgd", "seed": 0}
    first = FakeNotebooks()
    sweeps.run_point(tmp_path / "p", ["05_train", "06_eval"], values, str(params), execute=first)
    assert len(first.calls) == 2
    raw["figures"]["dpi"] = 300  # shapes no point
    params.write_text(yaml.safe_dump(raw))
    assert sweeps.run_point(tmp_path / "p", ["05_train", "06_eval"], values, str(params),
                            execute=FakeNotebooks())["status"] == "skipped"
    raw["eval"]["generation"]["max_new_tokens"] = 99
    params.write_text(yaml.safe_dump(raw))
    again = FakeNotebooks()
    assert sweeps.run_point(tmp_path / "p", ["05_train", "06_eval"], values, str(params),
                            execute=again)["status"] == "done"
    assert len(again.calls) == 2


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    def execute(name, out, parameters, kernel):
        if parameters["overrides"]["train.lr"] == 1e-6:
            raise RuntimeError("CUDA out of memory")
        FakeNotebooks()(name, out, parameters, kernel)

    frame = sweeps.sweep(tmp_path, ["05_train", "06_eval"], {"train.lr": [1e-6, 5e-6]},
                         {"method": "cgd", "seed": 0}, execute=execute)
    assert frame.status[0].startswith("failed: RuntimeError: CUDA out of memory")
    assert frame.status[1] == "done"


def test_mixture_step_redraws_stage_04s_mixture(tmp_path):
    rows = [{"id": f"r{i}", "status": "ok", "conclusion": "wrong" if i < 6 else "right",
             "verifier_correct": i >= 6} for i in range(10)]
    write_jsonl(tmp_path / "cgd_data.jsonl", rows)
    report = sweeps.redraw_mixture(str(tmp_path / "cgd_data.jsonl"), str(tmp_path / "out.jsonl"),
                                   str(tmp_path / "m.json"), "params.yaml",
                                   {"refine.incorrect_fraction": 0.25, "refine.mixture_total": 4,
                                    "refine.label_source": "critique"})
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 10 and sum(r["in_mixture"] for r in out) == 4
    assert sum(r["in_mixture"] and r["student_incorrect"] for r in out) == 1
    assert report["in_mixture"] == 4 and report["excluded_by_mixture"] == 6 and report["rows"] == 10
    with pytest.raises(ValueError, match="needs 7 incorrect.*ablations.mixture.total"):
        sweeps.redraw_mixture(str(tmp_path / "cgd_data.jsonl"), str(tmp_path / "o.jsonl"),
                              str(tmp_path / "m.json"), "params.yaml",
                              {"refine.incorrect_fraction": 1.0, "refine.mixture_total": 4 + 3,
                               "refine.label_source": "critique"})


# ---------------------------------------------------------------- what the figures read


def _point(ablation, values, evals, overrides=None):
    return {"ablation": ablation, "values": values, "overrides": overrides or {}, "chain": [],
            "fingerprint": "x", "train": None, "eval": evals}


def _ev(accs, epoch=None):
    return {"model": "m", "epoch": epoch, "groups": {}, "benchmarks": {
        b: {"group": g, "accuracy": {"mean": a, "ci_low": a - 5, "ci_high": a + 5}} for b, (g, a) in accs.items()}}


def test_only_points_of_the_current_grid_are_drawn(raw_params):
    raw_params["ablations"]["lr"]["values"] = [2e-5]  # the demo ships it off
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml")
    lr = cfg.ablations.lr.values[0]
    assert read_points.is_current(_point("lr", {"method": "cgd", "seed": 0, "train.lr": lr}, {}), cfg)
    assert not read_points.is_current(_point("lr", {"method": "cgd", "seed": 0, "train.lr": 3e-3}, {}), cfg)
    assert not read_points.is_current(_point("lr", {"method": "cgd", "seed": 7, "train.lr": lr}, {}), cfg)
    assert not read_points.is_current(_point("teacher", {"method": "cgd", "seed": 0, "teacher": "x"}, {}), cfg)


def test_a_teacher_point_that_skipped_the_general_suites_is_still_current(raw_params):
    """dvc.yaml's ablate_* points set eval.general.tasks={} besides the teacher's overrides; Table 8
    must still find them (found by rehearsing llama8b-webinstruct: Table 8 read "not run")."""
    spec = {"teacher.model": "simplescaling/s1.1-32B", "teacher.tensor_parallel_size": 4}
    raw_params["ablations"]["teacher"]["teachers"] = {"s1.1-32b": spec}
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml")
    values = {"method": "cgd", "seed": 0, "teacher": "s1.1-32b"}
    assert read_points.is_current(_point("teacher", values, {}, {**spec, "eval.general.tasks": {}}), cfg)
    assert read_points.is_current(_point("teacher", values, {}, dict(spec)), cfg)
    other = {**spec, "teacher.model": "org/other"}
    assert not read_points.is_current(_point("teacher", values, {}, {**other, "eval.general.tasks": {}}), cfg)
    assert not read_points.is_current(_point("teacher", values, {}, {**spec, "train.lr": 1e-3}), cfg)


def test_curve_frames_average_seeds_and_the_math_group():
    points = [_point("mixture", {"method": "cgd", "seed": s, "refine.incorrect_fraction": f},
                     {"06_eval": _ev({"gsm8k": (1, 10.0 * s + 100 * f), "math500": (1, 20.0), "gpqa": (2, 90.0)})})
              for s in (0, 1) for f in (0.0, 0.5)]
    frame = read_points.curve_frame(points, "mixture")
    avg = frame[frame.benchmark == "avg"].set_index("x")
    # mean over seeds of the Group 1 mean (gpqa is Group 2): (5 + 20) / 2 at 0%, (55 + 20) / 2 at 50%
    assert list(avg.index) == [0.0, 50.0]
    assert avg.accuracy.tolist() == pytest.approx([12.5, 37.5])
    assert (avg.ci_low < avg.accuracy).all() and (avg.seeds == 2).all()  # a t-interval over 2 seeds
    epochs = [_point("epochs", {"method": "cgd", "seed": 0, "train.epochs": 2},
                     {"06_eval-epoch1": _ev({"gsm8k": (1, 3.0)}, 1), "06_eval-epoch2": _ev({"gsm8k": (1, 4.0)}, 2)})]
    ep = read_points.curve_frame(epochs, "epochs")
    assert ep[["x", "accuracy", "ci_low"]].values.tolist() == [[1, 3.0, -2.0], [2, 4.0, -1.0]]


def test_table8_sets_each_teacher_beside_the_paper(raw_params):
    from cgd.reporting import paper

    base = {"base": _ev({"math500": (1, 40.0)})}
    runs = {"meta-llama/Llama-3.3-70B-Instruct": {"cgd-seed0": _ev({"math500": (1, 50.0)})},
            "models/other": {"cgd-seed0": _ev({"math500": (1, 45.0)})}}
    columns, rows = tables.table8(base, runs, paper.load(), "LLaMA3.1-8B Instruct")
    assert list(rows) == ["base", "cgd@meta-llama/Llama-3.3-70B-Instruct", "cgd@models/other"]
    cell = rows["cgd@meta-llama/Llama-3.3-70B-Instruct"]["math500"]
    assert (cell.run, cell.paper) == (50.0, 54.2)
    assert rows["cgd@models/other"]["math500"].paper is None
    assert rows["base"]["math500"].paper == 50.6 and rows["base"]["gsm8k"].run is None
    assert tables.method_title("cgd@models/other") == "CGD (teacher = models/other)"
    assert tables.method_title("cft@5e-06") == "CFT (LR = 5e-06)"


def test_seed_table_reports_each_seed_and_the_interval():
    metrics = {f"cgd-seed{s}": _ev({"gsm8k": (1, a)}) for s, a in ((0, 10.0), (1, 20.0), (2, 30.0))}
    metrics["base"] = _ev({"gsm8k": (1, 5.0)})
    frame = tables.seed_table(metrics)
    row = frame.iloc[0]
    assert (row.method, row.seeds, row.seed0, row.seed2, row["mean"], row.sd) == ("cgd", 3, 10.0, 30.0, 20.0, 10.0)
    assert row.ci_low == pytest.approx(20 - 4.303 * 10 / 3 ** 0.5, abs=0.1)
    assert len(frame) == 1  # the base model has no seeds


def test_ablation_params_are_validated(raw_params):
    def load(**changes):
        raw = yaml.safe_load(yaml.safe_dump(raw_params))
        for dotted, value in changes.items():
            node = raw
            *parents, last = dotted.split("__")
            for part in parents:
                node = node[part]
            node[last] = value
        return P.from_dict(raw, REPO / "dvc.yaml")

    with pytest.raises(P.ParamsError, match="'ablations.lr.values' lists a value twice"):
        load(ablations__lr__values=[5e-6, 5e-6])
    with pytest.raises(P.ParamsError, match=r"incorrect_fractions\[1\]' is 1.5"):
        load(ablations__mixture__incorrect_fractions=[0.5, 1.5])
    with pytest.raises(P.ParamsError, match="changes more than the teacher"):
        load(ablations__teacher__teachers={"s1": {"train.lr": 1e-6}})
    with pytest.raises(P.ParamsError, match="teachers.s1' sets an invalid value"):
        load(ablations__teacher__teachers={"s1": {"teacher.max_model_len": "big"}})
    with pytest.raises(P.ParamsError, match="teacher.model' points to 'models/missing'"):
        load(ablations__teacher__teachers={"s1": {"teacher.model": "models/missing"}})
    with pytest.raises(P.ParamsError, match="'ablations.lr.methods' is empty"):
        load(ablations__lr__methods=[], ablations__lr__values=[2e-5])
    assert load(ablations__teacher__teachers={"s1.1-32b": {"teacher.model": "simplescaling/s1.1-32B"}})


def test_an_empty_grid_means_no_stage(raw_params):
    """DVC expands a matrix with an empty list into no stages: an ablation switched off runs nothing."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("ablate_lr", "ablate_mixture", "ablate_teacher", "ablate_epochs"):
        assert "matrix" in stages[name] and "cgd sweep-point" in stages[name]["cmd"]
    off = yaml.safe_load(yaml.safe_dump(raw_params))
    off["ablations"]["lr"]["values"] = []
    assert P.matrix_items(stages["ablate_lr"], off) == []
    on = yaml.safe_load(yaml.safe_dump(raw_params))
    on["ablations"]["lr"].update(methods=["cgd", "cft"], values=[5e-6, 2e-5])  # the demo ships it off
    assert len(P.matrix_items(stages["ablate_lr"], on)) == 2 * 2 * len(raw_params["train"]["seeds"])


# ---------------------------------------------------------------- slow: the tiny model, end to end


def _tiny_params(raw: dict, tiny: str) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["student"]["model"] = raw["teacher"]["model"] = tiny
    for section in (raw["rollout"], raw["critique"], raw["refine"], raw["eval"]["generation"]):
        section["backend"] = "transformers"  # the tiny model's heads are too narrow for vLLM on CPU
    raw["train"].update(max_length=512, global_batch_size=2, per_device_batch_size=2)
    raw["eval"]["benchmarks"] = {"gsm8k": 2}
    raw["eval"]["generation"].update(max_new_tokens=8, batch_size=2)
    raw["eval"]["bootstrap_resamples"] = 200
    raw["figures"]["formats"] = ["png"]
    return raw


def checkout_copy(repo: Path) -> Path:
    """The checkout's files in `repo` without this run's outputs (as a fresh clone, minus dvc.lock),
    and a dvc.yaml without stage 08, which these runs have too few models for (figures then skips
    Tables 9-11)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("metrics/eval/", "metrics/05_train/", "dvc.lock",
                                                          "metrics/08_diagnostics", "figures/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    del pipeline["stages"]["diagnostics"]
    pipeline["stages"]["figures"]["deps"] = [d for d in pipeline["stages"]["figures"]["deps"]
                                             if "08_diagnostics" not in d]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    for folder in ("metrics/eval", "metrics/05_train"):
        (repo / folder).mkdir(parents=True, exist_ok=True)
    return repo


def _cgd_rows(n: int = 4) -> list[dict]:
    return [{"id": f"r{i}", "question": f"What is {i} + {i}?", "reference_solution": f"{i}+{i}={2 * i}",
             "reference_answer": str(2 * i), "source": "test", "student_answer": f"It is {2 * i + 1}.",
             "critique": "The sum is off by one. Conclusion: wrong", "conclusion": "wrong",
             "verifier_correct": False, "refined_answer": f"{i}+{i}={2 * i}, so \\boxed{{{2 * i}}}",
             "refined_correct": True, "status": "ok", "student_incorrect": True, "in_mixture": True}
            for i in range(n)]


@pytest.mark.slow
def test_lr_sweep_through_dvc_caches_two_points_and_draws_fig7(tmp_path, tiny_model, raw_params):
    """`dvc repro` of a two-point ablations.lr grid: two cached point folders with different models,
    a second repro skips both, and the figures stage draws Fig. 7 and Table 4 from them."""
    repo = checkout_copy(tmp_path / "repo")
    # The tiny model stands in for the embedded one, and a few stage-04 rows for the pipeline's.
    shutil.copytree(tiny_model, repo / "models/smollm2-135m-instruct")
    write_jsonl(repo / "data/04_refine/cgd_data.jsonl", _cgd_rows())
    raw = _tiny_params(raw_params, "models/smollm2-135m-instruct")
    raw["train"]["methods"], raw["train"]["seeds"] = ["cgd"], [0]
    raw["ablations"]["lr"] = {"methods": ["cgd"], "values": [1.0e-4, 1.0e-2]}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    run = lambda *cmd: subprocess.run([str(Path(venv_bin) / "dvc"), *cmd], cwd=repo, capture_output=True,
                                      text=True, timeout=900, env=env)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)  # DVCLive in a stage needs a commit
    subprocess.run([*git, "commit", "-qm", "test"], cwd=repo, check=True)
    points = ["ablate_lr@cgd-0.0001-0", "ablate_lr@cgd-0.01-0"]
    first = run("repro", "--single-item", "eval_base", *points, "figures")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for p in points:
        assert f"Running stage '{p}'" in first.stdout

    folders = [repo / "sweeps/lr/cgd-lr0.0001-seed0", repo / "sweeps/lr/cgd-lr0.01-seed0"]
    weights = [(f / "model/model.safetensors").read_bytes() for f in folders]
    assert weights[0] != weights[1]  # two distinct trained models
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    md5s = {lock[p]["outs"][0]["md5"] for p in points}
    assert len(md5s) == 2  # two distinct cached outputs
    for f in folders:
        assert (f / "runs/05_train.ipynb").exists() and (f / "runs/06_eval.ipynb").exists()
    m = read_json(repo / "metrics/ablations/lr/cgd-lr0.01-seed0.json")
    assert m["ablation"] == "lr" and m["values"]["train.lr"] == 0.01 and "gsm8k" in m["eval"]["06_eval"]["benchmarks"]
    # a point's accuracy carries the rule that graded it, as the main runs' metrics do
    assert m["eval"]["06_eval"]["benchmarks"]["gsm8k"]["grader"] == read_json(repo / "metrics/eval/base.json")[
        "benchmarks"]["gsm8k"]["grader"]

    second = run("repro", "--single-item", *points)
    assert second.returncode == 0 and second.stdout.count("didn't change, skipping") == 2, second.stdout

    assert (repo / "figures/fig7_lr.png").exists()
    t4 = (repo / "figures/table4.csv").read_text()
    assert "cgd@0.0001" in t4 and "cgd@0.01" in t4
    index = (repo / "figures/INDEX.md").read_text()
    assert "| Fig. 7 | `figures/fig7_lr.png` | done |" in index
    assert "| Fig. 5 |" in index and "ablations.mixture.incorrect_fractions" in index  # still off: not run

    # Switched off, the ablation has no stage left and its points leave the figures.
    raw["ablations"]["lr"]["values"] = []
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    listed = run("stage", "list")
    assert "ablate_lr" not in listed.stdout
    third = run("repro", "--single-item", "figures")
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    assert not (repo / "figures/fig7_lr.png").exists()


@pytest.mark.slow
def test_papermill_sweep_command_resumes_after_an_interrupted_point(tmp_path, tiny_model, raw_params):
    """`python -m cgd sweep` over two learning rates on the tiny model: Ctrl-C during the second
    point, then the same command finishes it without redoing the first point or the finished step."""
    raw = _tiny_params(raw_params, str(tiny_model))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "cgd_data.jsonl", _cgd_rows())
    (tmp_path / "base.jsonl").write_text("")
    out = tmp_path / "sweep"
    common = {"method": "cgd", "seed": 0, "data_file": str(tmp_path / "cgd_data.jsonl"),
              "base_samples": str(tmp_path / "base.jsonl")}
    grid = {"train.lr": [1e-4, 1e-2]}

    calls = []

    def interrupt_second_eval(name, nb_out, parameters, kernel):
        if len(calls) == 3:  # point 1: train, eval; point 2: train; then Ctrl-C
            raise KeyboardInterrupt
        calls.append(name)
        sweeps.execute_notebook(name, nb_out, parameters, kernel)

    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep(out, ["05_train", "06_eval"], grid, common, str(params), "lr",
                     execute=interrupt_second_eval)
    second = out / sweeps.point_name({**common, "train.lr": 1e-2})
    trained = (second / "model/model.safetensors").stat().st_mtime_ns

    cmd = [sys.executable, "-m", "cgd", "sweep", str(out), "--ablation", "lr", "--grid", "train.lr=1e-4,1e-2",
           "--params", str(params), *[f"--set={k}={v}" for k, v in common.items()]]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and ",skipped," in summary[1] and ",done," in summary[2]
    assert (second / "model/model.safetensors").stat().st_mtime_ns == trained  # training not redone
    assert (second / "runs/06_eval.ipynb").exists() and (second / "metrics.json").exists()
    assert len(read_points.load_points(out)) == 2

    # The figures notebook draws the sweep's points (Fig. 7) when given the folder.
    import papermill as pm

    pm.execute_notebook(str(REPO / "notebooks/07_figures.ipynb"), str(tmp_path / "07.ipynb"), kernel_name="cgd",
                        progress_bar=False,
                        parameters={"params_file": str(params), "eval_dir": str(tmp_path / "none"),
                                    "train_dir": str(tmp_path / "none"), "out_dir": str(tmp_path / "figures"),
                                    "ablations_dir": str(tmp_path / "none"), "sweep_dirs": [str(out)],
                                    "comparisons_file": str(tmp_path / "comparisons.json")})
    assert (tmp_path / "figures/fig7_lr.png").exists()


@pytest.mark.slow
def test_epochs_point_keeps_and_evaluates_every_epoch(tmp_path, tiny_model, raw_params):
    raw = _tiny_params(raw_params, str(tiny_model))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "cgd_data.jsonl", _cgd_rows())
    (tmp_path / "base.jsonl").write_text("")
    values = {"method": "cgd", "seed": 0, "train.epochs": 2, "train.lr": 1e-2,
              "data_file": str(tmp_path / "cgd_data.jsonl"), "base_samples": str(tmp_path / "base.jsonl")}
    point = tmp_path / "point"
    result = sweeps.run_point(point, sweeps.ABLATIONS["epochs"].chain, values, str(params), "epochs",
                              every_epoch=True)
    assert result["status"] == "done" and result["train"]["steps"] == 4  # 4 rows, batch 2, 2 epochs
    snapshot = (point / "epochs/epoch1/model.safetensors").read_bytes()
    assert snapshot != (point / "model/model.safetensors").read_bytes()  # epoch 1 is not the final model
    assert not (point / "epochs/epoch2").exists()  # the final save is epoch 2
    assert [(label, ev["epoch"]) for label, ev in result["eval"].items()] == [
        ("06_eval-epoch1", 1), ("06_eval-epoch2", 2)]
    frame = read_points.curve_frame([result], "epochs")
    assert sorted(frame.x.unique()) == [1, 2]


@pytest.mark.slow
def test_teacher_and_mixture_steps_run_the_data_notebooks(tmp_path, tiny_model, raw_params):
    """The teacher ablation's chain plus the mixture step: a named teacher (the reference oracle)
    critiques and refines the student's answers, the mixture is re-drawn, the student trains on it."""
    raw = _tiny_params(raw_params, str(tiny_model))
    raw["ablations"]["teacher"]["teachers"] = {"oracle": {"critique.backend": "reference",
                                                          "refine.backend": "reference"}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    # Stage 02's rows (its schema): the student answered, wrongly, with a final answer.
    rows = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "reference_solution": f"{i}+{i}={2 * i}\n#### {2 * i}",
             "reference_answer": str(2 * i), "source": "test", "rollout_prompt": "rollout-v1",
             "student_answer": f"{i}+{i}={2 * i + 1}, so \\boxed{{{2 * i + 1}}}", "student_final_answer": str(2 * i + 1),
             "verifier_correct": False, "rollout_status": "ok", "rollout_finish_reason": "stop",
             "rollout_error": None, "rollout_tokens": 12} for i in range(4)]
    write_jsonl(tmp_path / "rollouts.jsonl", rows)
    (tmp_path / "base.jsonl").write_text("")
    chain = ["03_critique", "04_refine", "mixture", "05_train", "06_eval"]
    values = {"teacher": "oracle", "method": "cgd", "seed": 0, "in_file": str(tmp_path / "rollouts.jsonl"),
              "refine.incorrect_fraction": 1.0, "refine.mixture_total": 2, "refine.label_source": "verifier",
              "base_samples": str(tmp_path / "base.jsonl")}
    point = tmp_path / "point"
    result = sweeps.run_point(point, chain, values, str(params), "teacher")
    assert result["status"] == "done"
    assert result["overrides"]["critique.backend"] == "reference"
    critiques = read_json(point / "metrics/03_critique.json")
    assert critiques["backend"] == "reference" and critiques["rows"] == 4
    assert result["mixture"]["in_mixture"] == 2 and result["mixture"]["from"].endswith("04_refine/cgd_data.jsonl")
    assert result["train"]["records"] == 2  # trained on the re-drawn mixture
    assert set(result["wall_s"]) == set(chain)
