"""dvc.yaml's code deps equal what each stage runs (cgd/launch/stage_deps.py), and DVC sees an edit."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cgd.launch import stage_deps

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"


def test_every_stage_lists_exactly_the_code_it_runs():
    want, have = stage_deps.expected(), stage_deps.listed()
    wrong = {name: {"missing": sorted(set(want[name]) - set(have.get(name, []))),
                    "not run": sorted(set(have.get(name, [])) - set(want[name]))}
             for name in want if want[name] != have.get(name)}
    assert not wrong, ("dvc.yaml's code deps differ from the stages' imports (`python -m cgd stage-deps` "
                       f"prints them): {wrong}")


def test_the_old_hand_lists_fail(tmp_path):
    """The check on dvc.yaml as it was before the layers: train listed three modules of its own and
    missed the device, config, generation and runtime code it runs."""
    old = {"stages": {"train": {
        "cmd": "papermill --kernel cgd notebooks/05_train.ipynb runs/05_train/x.ipynb",
        "deps": ["notebooks/05_train.ipynb", "cgd/generation/chat.py", "cgd/training/train.py",
                 "cgd/training/records.py", "cgd/distill/prompts.py"]}}}
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(old))
    want, have = stage_deps.expected(path, REPO)["train"], stage_deps.listed(path)["train"]
    assert want != have
    assert {"cgd/runtime", "cgd/config", "cgd/training"} <= set(want)  # device.py decides bf16 or fp32


def test_closure_follows_function_level_imports_and_launched_commands():
    mods = stage_deps.closure([REPO / "notebooks/05_train.ipynb"], [])
    assert "cgd.runtime.device" in mods  # imported inside train()
    assert "cgd.__main__" in mods  # `accelerate launch -m cgd train` on GPUs
    assert not any(m.startswith("cgd.reporting") for m in mods)


def test_the_package_root_holds_only_its_docstring():
    """cgd/__init__.py is left out of every stage's deps: it must not run code."""
    tree = ast.parse((REPO / "cgd/__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)


def _touch(root: Path, rel: str, text: str = "x\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _status(root: Path) -> str:
    out = subprocess.run([DVC, "status", "sample_data", "eval_base"], cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_dvc_status_names_the_stage_whose_module_changed(tmp_path):
    """A copy of the repository's code, params and dvc.yaml with stand-in data, committed with
    `dvc commit`; then one module a stage imports is edited, and `dvc status` must name that stage."""
    root = tmp_path / "repo"
    for rel in ("cgd", "notebooks", "configs", "requirements", "data/paper", ".dvc/config", "dvc.yaml",
                "params.yaml", ".dvcignore"):
        src = REPO / rel
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, root / rel, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    subprocess.run([DVC, "config", "core.no_scm", "true"], cwd=root, check=True, capture_output=True)
    cfg = yaml.safe_load((root / "params.yaml").read_text())
    model = cfg["embedded"]["model_dir"]
    for rel in ("data/01_sample/train.jsonl", "data/01_sample/dropped.jsonl", "runs/01_sample_data.ipynb",
                "metrics/01_sample_data.json", f"{model}/config.json", "data/06_eval/base/samples.jsonl",
                "runs/06_eval/base.ipynb", "metrics/eval/base.json"):
        _touch(root, rel)
    done = subprocess.run([DVC, "commit", "--force", "sample_data", "eval_base"], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "sample_data" not in _status(root)

    with open(root / "cgd/data/hub.py", "a") as fh:  # read by both stages (stage 01, the benchmarks)
        fh.write("# edited\n")
    status = _status(root)
    assert "sample_data" in status and "eval_base" in status and "cgd/data" in status

    subprocess.run([DVC, "commit", "--force", "sample_data", "eval_base"], cwd=root, check=True, capture_output=True)
    with open(root / "cgd/generation/hf.py", "a") as fh:  # generation: eval runs it, stage 01 does not
        fh.write("# edited\n")
    status = _status(root)
    assert "eval_base" in status and "sample_data" not in status
