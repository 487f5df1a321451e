"""dvc.yaml is well formed, and stage 01 runs end to end through papermill."""

from pathlib import Path

import pytest
import yaml

from cgd import config as P
from cgd.runtime.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _every_ablation_on(raw: dict) -> dict:
    """The demo's params with one point in every ablation, so each matrix stage has items to check."""
    raw = yaml.safe_load(yaml.safe_dump(raw))
    ab = raw["ablations"]
    ab["lr"]["values"], ab["mixture"]["incorrect_fractions"], ab["epochs"]["methods"] = [5e-6], [0.5], ["cgd"]
    ab["teacher"]["teachers"] = {"big": {"teacher.model": "org/Big-70B"}}
    ab["flaw_source"]["sources"] = {"small": {"model": "org/Small-1B"}}
    return raw


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_declares_existing_deps_and_known_params(name, raw_params):
    stage = STAGES[name]
    raw = _every_ablation_on(raw_params)
    # A dep is a file in the repo or (inside) an output of an upstream stage.
    outs = P.pipeline_outputs(raw, REPO / "dvc.yaml")
    items = P.matrix_items(stage, raw)
    assert items, f"{name}: no matrix item even with every ablation on"
    assert stage.get("params"), f"{name}: declare the params sections it reads"
    for item in items:
        for dep in stage.get("deps", []):
            dep = P.resolve_template(dep, {**raw, "item": item})
            produced = any(dep == o or dep.startswith(o.rstrip("/") + "/") for o in outs)
            assert (REPO / dep).exists() or produced, f"{name}: dep {dep} neither exists nor is produced"
        for key in stage["params"]:  # a key may name the item's own entry (ablations.flaw_source.sources.<s>)
            key = P.resolve_template(key, {**raw, "item": item})
            node = raw
            for part in key.split("."):
                assert part in node, f"{name}: params key {key} is not in params.yaml"
                node = node[part]


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_reads_only_its_declared_sections(name):
    """Every cfg.<section> a stage's notebook touches is declared, so DVC reruns it on change."""
    stage = STAGES[name]
    notebooks = [d for d in stage.get("deps", []) if d.endswith(".ipynb")]
    declared = {k.split(".")[0] for k in stage["params"]}
    for nb in notebooks:
        text = (REPO / nb).read_text()
        if "cgd.reporting.build" in text:  # notebook 07 narrates; stage 07's reads are in Report
            text += (REPO / "cgd/reporting/build.py").read_text().replace("self.cfg.", "cfg.")
        used = {s for s in P.Params.__dataclass_fields__ if f"cfg.{s}" in text}
        assert used <= declared, f"{nb} reads {used - declared} but {name} does not declare them"


def test_metrics_are_declared_uncached_json():
    for name, stage in STAGES.items():
        for metric in stage.get("metrics", []):
            path, opts = next(iter(metric.items()))
            assert path.startswith("metrics/") and path.endswith(".json") and opts == {"cache": False}


@pytest.mark.slow
def test_sample_data_notebook_through_papermill(tmp_path, webinstruct_hub):
    import papermill as pm

    out = tmp_path / "train.jsonl"
    metrics = tmp_path / "report.json"
    pm.execute_notebook(
        str(REPO / "notebooks/01_sample_data.ipynb"), str(tmp_path / "executed.ipynb"),
        kernel_name="cgd", progress_bar=False, cwd=str(REPO / "notebooks"),
        parameters={
            "overrides": {"data.source": "webinstruct", "data.hub_id": str(webinstruct_hub),
                          "data.require_final_answer": False, "data.n_train": 3},
            "out_file": str(out), "dropped_file": str(tmp_path / "dropped.jsonl"),
            "metrics_file": str(metrics),
        },
    )
    rows = list(read_jsonl(out))
    report = read_json(metrics)
    assert len(rows) == 3 == report["kept"]
    assert set(rows[0]) == {"id", "question", "reference_solution", "reference_answer", "source"}
    assert (report["read"], report["malformed"], report["duplicate"], report["contaminated"],
            report["clean"]) == (11, 3, 1, 2, 5)
    assert len(list(read_jsonl(tmp_path / "dropped.jsonl"))) == 6
    # Same params, same bytes: the stage is deterministic.
    again = tmp_path / "again.jsonl"
    pm.execute_notebook(
        str(REPO / "notebooks/01_sample_data.ipynb"), str(tmp_path / "executed2.ipynb"),
        kernel_name="cgd", progress_bar=False,
        parameters={
            "overrides": {"data.source": "webinstruct", "data.hub_id": str(webinstruct_hub),
                          "data.require_final_answer": False, "data.n_train": 3},
            "out_file": str(again), "dropped_file": str(tmp_path / "dropped2.jsonl"),
            "metrics_file": str(tmp_path / "report2.json"),
        },
    )
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.slow
def test_dvc_repro_runs_the_stage_command_and_caches(tmp_path):
    """The stage's real command line (papermill CLI, kernel, paths) works under `dvc repro`,
    a second repro skips it, and changing a param it reads reruns it."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    untracked = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, tracked + untracked):
        if (REPO / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    import os
    import sys

    venv_bin = str(Path(sys.executable).parent)  # as `source .venv/bin/activate` would set it
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    run = lambda *cmd: subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300,
                                      env=env)
    run("git", "init", "-q")
    dvc = str(Path(venv_bin) / "dvc")

    first = run(dvc, "repro", "--single-item", "sample_data")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'sample_data'" in first.stdout
    n_train = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["n_train"]
    assert len(list(read_jsonl(repo / "data/01_sample/train.jsonl"))) == n_train
    assert (repo / "runs/01_sample_data.ipynb").exists()

    second = run(dvc, "repro", "--single-item", "sample_data")
    assert second.returncode == 0 and "didn't change, skipping" in second.stdout

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["n_train"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = run(dvc, "repro", "--single-item", "sample_data")
    assert third.returncode == 0 and "Running stage 'sample_data'" in third.stdout
    assert read_json(repo / "metrics/01_sample_data.json")["kept"] == 16


@pytest.mark.slow
def test_generation_notebooks_through_papermill(tmp_path, tiny_model):
    """Stages 02-04 as notebooks: tiny-model rollout, reference-oracle critique and refinement."""
    import papermill as pm

    from cgd.runtime.io import write_jsonl

    rows = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "reference_solution": f"{i}+{i}={2 * i}\n#### {2 * i}",
             "reference_answer": str(2 * i), "source": "test"} for i in range(5)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    overrides = {"student.model": str(tiny_model), "teacher.model": str(tiny_model),
                 "rollout.max_new_tokens": 8, "rollout.batch_size": 2, "rollout.backend": "transformers",
                 "critique.backend": "reference", "refine.backend": "reference"}
    stages = [("02_rollout", "train.jsonl", "02", "rollouts.jsonl"),
              ("03_critique", "02/rollouts.jsonl", "03", "critiques.jsonl"),
              ("04_refine", "03/critiques.jsonl", "04", "cgd_data.jsonl")]
    for nb, inp, out, _ in stages:
        pm.execute_notebook(
            str(REPO / f"notebooks/{nb}.ipynb"), str(tmp_path / f"{nb}.ipynb"), kernel_name="cgd",
            progress_bar=False,
            parameters={"overrides": overrides, "in_file": str(tmp_path / inp),
                        "out_dir": str(tmp_path / out), "metrics_file": str(tmp_path / f"{out}.json")})
    final = list(read_jsonl(tmp_path / "04/cgd_data.jsonl"))
    assert [r["id"] for r in final] == [r["id"] for r in rows]
    for key in ("question", "reference_solution", "student_answer", "critique", "conclusion",
                "verifier_correct", "refined_answer", "status", "in_mixture"):
        assert all(key in r for r in final), key
    report = read_json(tmp_path / "04.json")
    assert sum(report["overall_status"].values()) == 5
    assert report["mixture"]["in_mixture"] == report["overall_status"].get("ok", 0)
    assert read_json(tmp_path / "02.json")["shards"] == 3
