"""Committed notebooks carry no outputs, take papermill parameters, and each is a DVC stage."""

from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and all(p.name[:2].isdigit() and p.name[2] == "_" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_one_parameters_cell_with_params_file(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert 'params_file = "params.yaml"' in tagged[0].source
    assert nb.metadata["kernelspec"]["name"] == "cgd"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_is_a_stage_writing_its_executed_copy_to_runs(path):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rel = f"notebooks/{path.name}"
    runs = [s for s in stages.values() if rel in s.get("deps", [])]
    assert runs, f"no dvc.yaml stage depends on {rel}"
    for stage in runs:
        if "cgd sweep-point" in stage["cmd"]:
            # An ablation point: the sweep runner writes <point>/runs/<notebook>.ipynb (test_sweeps).
            from cgd.experiments.sweeps import ABLATIONS

            ablation = stage["cmd"].split("--ablation ")[1].split()[0]
            assert path.stem in ABLATIONS[ablation].chain
            # flaw_source_data's points (one per source) sit beside the flaw_source points they feed
            assert next(iter(stage["outs"])).startswith(f"sweeps/{ablation.removesuffix('_data')}/")
            continue
        if "cgd diagnostic-set" in stage["cmd"]:
            # Notebooks 01-04 for a data-source diagnostic set: a point under the stage's own output.
            from cgd.experiments.diagnostic_set import CHAIN

            assert path.stem in CHAIN and "data/08_diagnostic_set" in [next(iter(o)) for o in stage["outs"]]
            continue
        # One executed copy per stage, or per model under runs/<notebook>/ (stages 05, 06).
        per_item = f"runs/{path.stem}/" in stage["cmd"]
        out = f"runs/{path.stem}/" if per_item else f"runs/{path.name}"
        assert "papermill" in stage["cmd"] and rel in stage["cmd"] and out in stage["cmd"]
        if per_item:
            out = next(o for o in stage["outs"] if isinstance(o, str) and o.startswith(out))
            assert out in stage["cmd"] and out.endswith(".ipynb")
        assert out in [o if isinstance(o, str) else next(iter(o)) for o in stage["outs"]]
        assert "-p params_file params.yaml" in stage["cmd"]
