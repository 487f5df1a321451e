"""The repository's dataset fixtures written as a local hub mirror: one folder per dataset, in the
dataset's own hub layout (file format, path, config and split names, the card's `configs` block).

Tests and rehearsals read these folders through the same loaders and params an air-gapped cluster
uses (`data.hub_id`, `webinstruct_cft.hub_id`, `diagnostics.hub_id`, `eval.hub_mirror`), so a
layout change on either side shows up here. The rows are in tests/fixtures; its README says where
each layout comes from.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

# Training pools and probe sets: repo -> (file in the repository, rows file, card `configs` block).
POOLS = {
    # TIGER-Lab/WebInstructSub: data/train-*.parquet, no configs block.
    "TIGER-Lab/WebInstructSub": ("data/train-00000-of-00001.parquet", "webinstructsub_rows.json", None),
    # TIGER-Lab/WebInstruct-CFT: one folder per subset, each a config of the card.
    "TIGER-Lab/WebInstruct-CFT": ("WebInstruct-CFT-50K/train-00000-of-00001.parquet", "webinstruct_cft_rows.json",
                                  "- config_name: WebInstruct-CFT-50K\n  data_files:\n  - split: train\n"
                                  "    path: WebInstruct-CFT-50K/train-*\n"),
    # nvidia/OpenMathInstruct-2: data/<split>-NNNNN-of-NNNNN.parquet per split.
    "nvidia/OpenMathInstruct-2": ("data/train_1M-00000-of-00001.parquet", "openmathinstruct2_rows.json",
                                  "- config_name: default\n  data_files:\n  - split: train_1M\n"
                                  "    path: data/train_1M-*\n"),
    # meta-math/MetaMathQA: one JSON array at the repository root.
    "meta-math/MetaMathQA": ("MetaMathQA-395K.json", "metamathqa_rows.json", None),
}


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


_NAMES = ("Ava", "Ben", "Chloe", "Dmitri", "Esi", "Farah", "Goran", "Hana", "Ines", "Jun", "Kofi", "Lena")
_ITEMS = (("crates", "melons"), ("shelves", "jars"), ("trays", "muffins"), ("bins", "bolts"),
          ("racks", "bikes"), ("vans", "parcels"), ("rows", "tulips"), ("folders", "maps"))


def extra_rows(repo: str, n: int, seed: int = 0) -> list[dict]:
    """`n` more rows of `repo`'s schema (as its fixture rows), short arithmetic questions with exact
    answers, for a rehearsal that needs more rows than the fixture holds."""
    import random

    rng = random.Random(f"{repo}:{seed}")  # each repo its own questions
    out = []
    for i in range(n):
        who, (box, item) = _NAMES[i % len(_NAMES)], _ITEMS[(i // len(_NAMES) + i) % len(_ITEMS)]
        a, b, c = rng.randint(3, 19), rng.randint(4, 29), rng.randint(2, 15)
        q = (f"{who} stacks {a} {box}, putting {b} {item} on each of them, and then gives away {c} {item}. "
             f"Exactly how many {item} does {who} still keep after giving those away?")
        total = a * b - c
        steps = f"{who} starts with {a} x {b} = {a * b} {item} and gives away {c}, keeping {a * b} - {c} = {total}."
        if repo == "TIGER-Lab/WebInstructSub":
            out.append({"orig_question": q, "orig_answer": str(total), "question": q,
                        "answer": f"{steps}\nThe answer is {total}.", "source": "rehearsal", "index": 9000 + i})
        elif repo == "meta-math/MetaMathQA":
            out.append({"type": "GSM_Rephrased", "query": q, "original_question": q,
                        "response": f"{steps}\n#### {total}\nThe answer is: {total}"})
        elif repo == "nvidia/OpenMathInstruct-2":
            out.append({"problem": q, "generated_solution": f"{steps}\nSo the answer is \\boxed{{{total}}}.",
                        "expected_answer": str(total), "problem_source": "augmented_gsm8k"})
        else:
            raise KeyError(f"no row maker for {repo}")
    return out


def write_pool(root: str | Path, repo: str, extra: int = 0) -> Path:
    """One training pool / probe set of POOLS under root/<repo>, with `extra` generated rows after
    the fixture's; returns its folder."""
    file, rows_file, configs = POOLS[repo]
    folder = Path(root) / repo
    if folder.exists():
        shutil.rmtree(folder)
    rows = json.loads((FIXTURES / rows_file).read_text()) + (extra_rows(repo, extra) if extra else [])
    if file.endswith(".json"):
        folder.mkdir(parents=True)
        (folder / file).write_text(json.dumps(rows, indent=1))
    else:
        _write_rows(folder / file, rows)
    if configs:
        (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    return folder


QUESTION_FIELD = {"TIGER-Lab/WebInstructSub": "question", "meta-math/MetaMathQA": "query",
                  "nvidia/OpenMathInstruct-2": "problem"}


def questions(extra: dict[str, int] | None = None) -> list[str]:
    """The question text of every training-pool and probe-set row write_all writes."""
    out = []
    for repo, field in QUESTION_FIELD.items():
        rows = json.loads((FIXTURES / POOLS[repo][1]).read_text())
        rows += extra_rows(repo, (extra or {}).get(repo, 0)) if (extra or {}).get(repo) else []
        out += [r[field] for r in rows]
    return out


def write_benchmarks(root: str | Path) -> Path:
    """The hub evaluation sets (eval_hub_rows.json) under root, as eval.hub_mirror reads them."""
    root = Path(root)
    spec = json.loads((FIXTURES / "eval_hub_rows.json").read_text())
    for repo, entry in spec.items():
        _write_rows(root / repo / entry["file"], entry["rows"])
        if "config" in entry:
            (root / repo / "README.md").write_text(
                "---\nconfigs:\n"
                f"- config_name: {entry['config']}\n  data_files:\n"
                f"  - split: {entry['split']}\n    path: {entry['file']}\n---\n")
    return root


def write_all(root: str | Path, extra: dict[str, int] | None = None) -> Path:
    """Every fixture dataset under root (a mirror of everything the paper profiles read), with
    `extra` generated rows per repo."""
    for repo in POOLS:
        write_pool(root, repo, (extra or {}).get(repo, 0))
    return write_benchmarks(root)
