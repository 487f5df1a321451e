from __future__ import annotations

import json
import os
import shutil
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
def webinstruct_hub(tmp_path_factory) -> Path:
    """TIGER-Lab/WebInstructSub's layout (data/train-*.parquet) with rows of its real schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("hub") / "TIGER-Lab" / "WebInstructSub"
    (root / "data").mkdir(parents=True)
    rows = json.loads((FIXTURES / "webinstructsub_rows.json").read_text())
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "train-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="session")
def metamathqa_hub(tmp_path_factory) -> Path:
    """meta-math/MetaMathQA's layout: one JSON array file at the repository root."""
    root = tmp_path_factory.mktemp("hub") / "meta-math" / "MetaMathQA"
    root.mkdir(parents=True)
    shutil.copy(FIXTURES / "metamathqa_rows.json", root / "MetaMathQA-395K.json")
    return root


@pytest.fixture
def raw_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())
