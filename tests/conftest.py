from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Tests never reach a hub; the hub code paths run against local folders with the hub layout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tests.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_conversion(tmp_path_factory) -> tuple[Path, dict]:
    """The embedded SmolLM2-135M-Instruct GGUF converted to a plain HF folder, once per session."""
    from cgd.data import assets

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    report = assets.convert_embedded_model(out, "bfloat16")
    return out, report


@pytest.fixture(scope="session")
def smollm2(smollm2_conversion) -> Path:
    return smollm2_conversion[0]


@pytest.fixture(scope="session")
def webinstruct_hub(tmp_path_factory) -> Path:
    """TIGER-Lab/WebInstructSub's layout (data/train-*.parquet) with rows of its real schema."""
    from cgd.rehearsal import mirror

    return mirror.write_pool(tmp_path_factory.mktemp("hub"), "TIGER-Lab/WebInstructSub")


@pytest.fixture(scope="session")
def openmathinstruct2_hub(tmp_path_factory) -> Path:
    """nvidia/OpenMathInstruct-2: data/<split>-NNNNN-of-NNNNN.parquet per split (here train_1M)."""
    from cgd.rehearsal import mirror

    return mirror.write_pool(tmp_path_factory.mktemp("hub"), "nvidia/OpenMathInstruct-2")


@pytest.fixture(scope="session")
def webinstruct_cft_hub(tmp_path_factory) -> Path:
    """TIGER-Lab/WebInstruct-CFT: one folder per subset (WebInstruct-CFT-4K, -50K, -600K), each a
    dataset config of the card."""
    from cgd.rehearsal import mirror

    return mirror.write_pool(tmp_path_factory.mktemp("hub"), "TIGER-Lab/WebInstruct-CFT")


@pytest.fixture(scope="session")
def metamathqa_hub(tmp_path_factory) -> Path:
    """meta-math/MetaMathQA's layout: one JSON array file at the repository root."""
    from cgd.rehearsal import mirror

    return mirror.write_pool(tmp_path_factory.mktemp("hub"), "meta-math/MetaMathQA")


@pytest.fixture
def raw_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def eval_hub_mirror(tmp_path_factory) -> Path:
    """A local mirror (eval.hub_mirror) of the hub evaluation sets: for each dataset, rows of
    its real schema in its real file format and place; configs declared in the dataset card's
    YAML header, as on the hub."""
    from cgd.rehearsal import mirror

    return mirror.write_benchmarks(tmp_path_factory.mktemp("eval-hub"))
