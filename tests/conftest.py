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
def smollm2_conversion(tmp_path_factory) -> tuple[Path, dict]:
    """The embedded SmolLM2-135M-Instruct GGUF converted to a plain HF folder, once per session."""
    from cgd import assets

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    report = assets.convert_embedded_model(out, "bfloat16")
    return out, report


@pytest.fixture(scope="session")
def smollm2(smollm2_conversion) -> Path:
    return smollm2_conversion[0]


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


def _parquet_hub(tmp_path_factory, repo: str, parquet: str, rows_file: str, configs: str) -> Path:
    """A dataset repository in the hub's layout: one parquet file of fixture rows and the dataset
    card's `configs` block naming it, as `datasets.load_dataset(<folder>, ...)` reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("hub") / repo
    (root / parquet).parent.mkdir(parents=True)
    rows = json.loads((FIXTURES / rows_file).read_text())
    pq.write_table(pa.Table.from_pylist(rows), root / parquet)
    (root / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    return root


@pytest.fixture(scope="session")
def openmathinstruct2_hub(tmp_path_factory) -> Path:
    """nvidia/OpenMathInstruct-2: data/<split>-NNNNN-of-NNNNN.parquet per split (here train_1M)."""
    return _parquet_hub(tmp_path_factory, "nvidia/OpenMathInstruct-2", "data/train_1M-00000-of-00001.parquet",
                        "openmathinstruct2_rows.json",
                        "- config_name: default\n  data_files:\n  - split: train_1M\n    path: data/train_1M-*\n")


@pytest.fixture(scope="session")
def webinstruct_cft_hub(tmp_path_factory) -> Path:
    """TIGER-Lab/WebInstruct-CFT: one folder per subset (WebInstruct-CFT-4K, -50K, -600K), each a
    dataset config of the card."""
    return _parquet_hub(tmp_path_factory, "TIGER-Lab/WebInstruct-CFT",
                        "WebInstruct-CFT-50K/train-00000-of-00001.parquet", "webinstruct_cft_rows.json",
                        "- config_name: WebInstruct-CFT-50K\n  data_files:\n  - split: train\n"
                        "    path: WebInstruct-CFT-50K/train-*\n")


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


@pytest.fixture(scope="session")
def eval_hub_mirror(tmp_path_factory) -> Path:
    """A local mirror (eval.hub_mirror) of the hub evaluation sets: for each dataset, rows of
    its real schema in its real file format and place; configs declared in the dataset card's
    YAML header, as on the hub."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("eval-hub")
    spec = json.loads((FIXTURES / "eval_hub_rows.json").read_text())
    for repo, entry in spec.items():
        path = root / repo / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = entry["rows"]
        if path.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist(rows), path)
        elif path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        if "config" in entry:
            (root / repo / "README.md").write_text(
                "---\nconfigs:\n"
                f"- config_name: {entry['config']}\n  data_files:\n"
                f"  - split: {entry['split']}\n    path: {entry['file']}\n---\n")
    return root
