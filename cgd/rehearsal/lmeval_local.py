"""lm-eval tasks read from local files: for rehearsals and air-gapped clusters.

`write(tasks, out)` writes, for every leaf task under the named tasks and groups, a YAML that
`include`s lm-eval's own task file (its prompt, metrics, `process_results`, few-shot settings)
and replaces only where the rows come from: `dataset_path: json` on a local JSONL per split.
Groups are not rewritten: lm-eval's own group (e.g. `leaderboard_musr`, `leaderboard_bbh`) then
resolves its subtasks to these local leaves, since a task in `include_path` overrides the
built-in one of the same name. Point `eval.general.include_path` at `out`.

The rows (`ROWS`) are short, written here in each dataset's own schema, as lm-eval's task code
reads it: IFEval's `key / prompt / instruction_id_list / kwargs` (wis-k/instruction-following-eval),
MuSR's `narrative / question / choices` (a Python list literal) `/ answer_choice` (TAUR-Lab/MuSR),
TruthfulQA's `mc1_targets / mc2_targets` (truthfulqa/truthful_qa, multiple_choice), BBH's
`input / target` (SaylorTwift/bbh; the target one of the subtask's `doc_to_choice`), HumanEval's
`task_id / prompt / canonical_solution / test / entry_point` (openai/openai_humaneval).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

_IFEVAL_KWARGS = {"num_highlights": None, "relation": None, "num_words": None, "num_placeholders": None,
                  "prompt_to_repeat": None, "num_bullets": None, "section_spliter": None, "num_sections": None,
                  "capital_relation": None, "capital_frequency": None, "keywords": None, "num_paragraphs": None,
                  "language": None, "let_relation": None, "letter": None, "let_frequency": None, "end_phrase": None,
                  "forbidden_words": None, "keyword": None, "frequency": None, "num_sentences": None,
                  "postscript_marker": None, "first_word": None, "nth_paragraph": None}

ROWS = {
    "wis-k/instruction-following-eval": [
        {"key": 1000, "prompt": "Write a short note about rain without using any commas.",
         "instruction_id_list": ["punctuation:no_comma"], "kwargs": [dict(_IFEVAL_KWARGS)]},
        {"key": 1001, "prompt": "Describe a cat in all lowercase letters. Use at least 12 words.",
         "instruction_id_list": ["change_case:english_lowercase", "length_constraints:number_words"],
         "kwargs": [dict(_IFEVAL_KWARGS), {**_IFEVAL_KWARGS, "relation": "at least", "num_words": 12}]},
    ],
    "TAUR-Lab/MuSR": [
        {"narrative": "Ann left the key in the red box, then Ben moved it to the blue box while Ann was out.",
         "question": "Where will Ann look for the key first?", "choices": "['red box', 'blue box']",
         "answer_index": 0, "answer_choice": "red box"},
        {"narrative": "Three people share two tasks; Cara codes well, Dev writes well, Eve does both poorly.",
         "question": "Who should write the report?", "choices": "['Cara', 'Dev', 'Eve']",
         "answer_index": 1, "answer_choice": "Dev"},
    ],
    # HumanEval's schema (openai/openai_humaneval): the prompt is a signature and docstring, `test`
    # defines check(candidate); two problems written here, not the benchmark's
    "openai/openai_humaneval": [
        {"task_id": "Local/0", "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
         "canonical_solution": "    return a + b\n",
         "test": "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"},
        {"task_id": "Local/1", "prompt": 'def double(x: int) -> int:\n    """Return twice x."""\n',
         "canonical_solution": "    return 2 * x\n",
         "test": "\n\ndef check(candidate):\n    assert candidate(4) == 8\n", "entry_point": "double"},
    ],
    "truthfulqa/truthful_qa": [
        {"question": "What happens if you crack your knuckles a lot?",
         "mc1_targets": {"choices": ["Nothing in particular happens.", "You will get arthritis."], "labels": [1, 0]},
         "mc2_targets": {"choices": ["Nothing in particular happens.", "It does no harm.", "You will get arthritis."],
                         "labels": [1, 1, 0]}},
        {"question": "Is the Great Wall of China visible from the Moon with the naked eye?",
         "mc1_targets": {"choices": ["No.", "Yes."], "labels": [1, 0]},
         "mc2_targets": {"choices": ["No.", "No, it is far too narrow.", "Yes."], "labels": [1, 1, 0]}},
    ],
}


def _tasks_root() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def _index() -> tuple[dict[str, Path], dict[str, list[str]]]:
    """lm-eval's task YAMLs and cgd's own (cgd/evaluation/lm_eval_tasks) by task name, and the groups'
    subtasks."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from cgd.evaluation.general import TASKS_DIR

    tasks, groups = {}, {}
    for path in sorted(TASKS_DIR.rglob("*.yaml")) + sorted(_tasks_root().rglob("*.yaml")):
        try:
            cfg = load_yaml(path, resolve_func=False, recursive=False)
        except Exception:  # noqa: BLE001 - templates and unrelated files that are not task dicts
            continue
        if isinstance(cfg.get("group"), str) and isinstance(cfg.get("task"), list):
            groups[cfg["group"]] = [t if isinstance(t, str) else t.get("task") for t in cfg["task"]]
        elif isinstance(cfg.get("task"), str):
            tasks.setdefault(cfg["task"], path)
    return tasks, groups


def leaves(names: list[str]) -> dict[str, Path]:
    """Every leaf task under `names` (groups expanded) with the YAML that defines it."""
    tasks, groups = _index()
    out: dict[str, Path] = {}

    def walk(name: str) -> None:
        if name in groups:
            for sub in groups[name]:
                walk(sub)
        elif name in tasks:
            out[name] = tasks[name]
        else:
            raise KeyError(f"lm-eval {name} is neither a task nor a group of lm-eval's own (eval.general.tasks)")

    for n in names:
        walk(n)
    return out


def _rows(cfg: dict) -> list[dict]:
    path = cfg.get("dataset_path")
    if path == "SaylorTwift/bbh":
        choices = cfg.get("doc_to_choice")
        choices = choices if isinstance(choices, list) else ["True", "False"]
        return [{"input": f"Example {i} of {cfg.get('dataset_name')}: which option holds?", "target": str(c)}
                for i, c in enumerate(choices[:2])]
    if path not in ROWS:
        raise KeyError(f"no local rows for lm-eval dataset {path} (task {cfg.get('task')}): add them to "
                       "cgd/rehearsal/lmeval_local.py ROWS in the dataset's schema")
    return ROWS[path]


def write(names: list[str], out: str | Path) -> list[str]:
    """Local leaf tasks for `names` into `out`; returns the leaf task names."""
    from lm_eval.tasks._yaml_loader import load_yaml

    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    written = []
    for task, path in leaves(names).items():
        cfg = load_yaml(path, resolve_func=False, recursive=True)
        rows = _rows(cfg)
        data = out / "data" / f"{task}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        splits = {cfg.get(k) for k in ("test_split", "validation_split", "training_split", "fewshot_split")}
        local = {"include": str(path), "task": task, "dataset_path": "json", "dataset_name": None,
                 "dataset_kwargs": {"data_files": {s: str(data) for s in sorted(filter(None, splits))}}}
        (out / f"{task}.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
        written.append(task)
    return written
