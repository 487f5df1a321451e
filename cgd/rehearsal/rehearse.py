"""Rehearse a paper profile end to end on this machine before it meets a cluster.

`python -m cgd rehearse configs/profiles/NAME.yaml` (`make rehearse NAME=...`) copies the repository
into a scratch folder, applies the profile to the copy's params.yaml, then an overlay that changes
only two kinds of key, and runs the real `dvc repro` there:

- SIZES: rows, problems, lengths, batch and shard sizes, steps shrink;
- SWAPS: what this machine cannot have: the hub's models (small stand-ins in each model's shape,
  cgd/rehearsal/standins.py), the hub's datasets (the fixtures written as a local hub mirror, cgd/rehearsal/mirror.py,
  through the params an air-gapped cluster sets), lm-eval's hub datasets (local task files that
  include lm-eval's own task YAMLs), NLTK's downloaded tokenizer, and the GPU settings (vLLM on the
  CPU with a KV cache in GiB and no CUDA graphs, tensor parallel 1, training in-process instead of
  DeepSpeed ZeRO-3, grading workers to the cores there are).

Every other key stays as the profile sets it (KEEP): methods, seeds, ablation grids, pass@k
benchmarks and k, label source, batch plan, save and logging steps, general tasks, diagnostic
source, formats. `tests/test_rehearsal.py` fails when a params key is in none of the three lists, so a
new key gets a decision. The user's params.yaml, data, models and dvc.lock are never touched.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cgd import config as P
from cgd.data import benchmarks
from cgd.rehearsal import outcome
from cgd.runtime import kernel

REPO = Path(__file__).resolve().parents[2]
# This interpreter's own dvc (the venv's), so an un-activated `.venv/bin/python -m cgd rehearse` works.
DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"
# The profile that expands to every stage kind and the most stages (77): the rehearsal that covers
# the most code paths. CI rehearses CI_PROFILE instead while that one does not fit CI's 45 minutes
# on every machine kind: from a fresh clone it took 18.2 min on the AMD kind with AVX512-BF16 but
# ~32 min on the one without AVX512 (28.4 min with its stand-ins cached), after `make test` (~22 min
# with setup there); the base model's profile (plain layout, Table 3, diagnostics from
# OpenMathInstruct-2) took 1.9 min from a fresh clone on the first kind, ~5 min on the second.
WIDEST_PROFILE = "llama8b-webinstruct"
CI_PROFILE = "llama8b-base-webinstruct"

# ---------------------------------------------------------------- the overlay

# Sizes: (dotted key, the rehearsal's value). A callable gets the profile's value.
SIZES = {
    "data.n_train": 20,  # of the pool's fixture rows and EXTRA_ROWS more (sampling still samples)
    "webinstruct_cft.n_rows": lambda v: v if v is None else 4,
    "rollout.max_new_tokens": 96, "critique.max_new_tokens": 96, "refine.max_new_tokens": 96,
    "rollout.batch_size": 8, "critique.batch_size": 8, "refine.batch_size": 8,  # 3 shards of 20 rows
    "train.global_batch_size": 4,
    "train.tokens_per_device_batch": lambda v: v if v is None else 1024,
    "eval.benchmarks": lambda v: {name: 2 for name in v},  # every benchmark kept, 2 problems each
    # 2 shards of the 148 greedy and pass@k items (still resumed shard by shard): each shard is one
    # vLLM call that decodes up to max_new_tokens steps: 37 shards of 4 took 10.1 s to generate, 3 of
    # 64 took 6.4 s and 2 of 80 6.8 s (measured on the main profile's evaluations)
    "eval.generation.max_new_tokens": 96, "eval.generation.batch_size": 80,
    "eval.general.limit": 1,
    "eval.checkpoint.validation_rows": 2,  # validation problems each candidate answers
    "eval.bootstrap_resamples": 200,
    # two rows at every share: round(2 x share) incorrect; the release's rule (smaller_class) is kept
    "ablations.mixture.total": lambda v: v if v == "smaller_class" else 2,
    "diagnostics.rows": 4, "diagnostics.attention_rows": 2, "diagnostics.attention_max_new_tokens": 16,
    "diagnostics.counterfactual_rows": 4, "diagnostics.counterfactual_max_new_tokens": 32,
    "critique_quality.rows": lambda v: v and 8, "critique_quality.batch_size": 4, "critique_quality.max_new_tokens": 32,
}

# Rows generated in each pool's schema after its fixture rows (cgd/mirror.extra_rows): the fixtures
# alone (11 WebInstructSub rows, 5 of them clean) cannot feed a mixture of both labels.
EXTRA_ROWS = {"TIGER-Lab/WebInstructSub": 24, "meta-math/MetaMathQA": 24, "nvidia/OpenMathInstruct-2": 8}

# Swaps, by why. Model ids and dataset ids are filled in per profile (see `overlay`).
SWAP_KEYS = {
    "student.model": "a stand-in in the model's shape (cgd/rehearsal/standins.py); hub weights cannot be downloaded here",
    "teacher.model": "as student.model",
    "ablations.teacher.teachers": "each teacher's model id -> its stand-in, tensor parallel 1; a teacher behind an API "
                                  "(backend openai) served here as the others are; other overrides kept",
    "rollout.model": "its model id -> its stand-in, and its GPU settings as the student's swaps (null stays null)",
    "critique_quality.model": "the judge's model id -> its stand-in, and its GPU settings as the teacher's swaps "
                              "(null, the teacher, stays null)",
    "ablations.flaw_source.sources": "each source's model id -> its stand-in, and its GPU settings as the student's swaps",
    "data.hub_id": "the fixture in the hub layout (cgd/rehearsal/mirror.py), as an air-gapped cluster sets it",
    "webinstruct_cft.hub_id": "as data.hub_id", "diagnostics.hub_id": "as data.hub_id",
    "eval.hub_mirror": "a local folder of the hub benchmarks in their layout",
    "eval.general.include_path": "local lm-eval task files: lm-eval's own task YAMLs, data from local files",
    "student.tensor_parallel_size": "1: one CPU process", "teacher.tensor_parallel_size": "1: one CPU process",
    "student.enforce_eager": "true: no CUDA graphs on the CPU", "teacher.enforce_eager": "as student",
    "student.kv_cache_gib": "0.25: vLLM on the CPU sizes its cache in GiB, not a share of GPU memory",
    "teacher.kv_cache_gib": "as student",
    "student.dtype": "float32 only where this CPU has no bf16 instructions (AMX, AVX512-BF16): torch "
                     "emulates bf16 there, 12x slower per matmul (kept where it has them)",
    "teacher.dtype": "as student.dtype", "student.data_parallel_size": "1: one engine replica on this machine's cores",
    "teacher.data_parallel_size": "as student.data_parallel_size",
    "student.nodes": "1: this machine is the only node", "teacher.nodes": "as student.nodes",
    "student.head_address": "null: one node", "teacher.head_address": "as student.head_address",
    "train.deepspeed": "null: trained in-process (DeepSpeed ZeRO-3 needs GPUs)",
    "eval.grading_workers": "2: this machine's cores",
}
SWAP_VALUES = {"student.tensor_parallel_size": 1, "teacher.tensor_parallel_size": 1,
               "student.enforce_eager": True, "teacher.enforce_eager": True,
               "student.kv_cache_gib": 0.25, "teacher.kv_cache_gib": 0.25,
               "student.data_parallel_size": 1, "teacher.data_parallel_size": 1,
               "student.nodes": 1, "teacher.nodes": 1, "student.head_address": None, "teacher.head_address": None,
               "train.deepspeed": None, "eval.grading_workers": 2}

# Kept as the profile has them: they pick code paths (or are settings the CPU runs as they are).
KEEP = {
    "seed", "embedded.model_dir", "embedded.dtype",
    "data.source", "data.split", "data.revision", "data.require_final_answer", "data.min_question_chars",
    "data.decontamination.benchmarks", "data.decontamination.ngram",
    "webinstruct_cft.subset", "webinstruct_cft.split", "webinstruct_cft.revision",
    "data.selection", "rollout.backend", "rollout.temperature", "rollout.top_p", "rollout.prompt_file", "rollout.prompt_set",
    "critique.backend", "critique.temperature", "critique.top_p", "critique.prompt_file", "critique.prompt_set",
    "critique.conclusion_followup",
    "critique_quality.backend", "critique_quality.temperature", "critique_quality.top_p", "critique_quality.rubric_file",
    "refine.backend", "refine.temperature", "refine.top_p", "refine.prompt_file", "refine.prompt_set",
    "refine.incorrect_fraction",
    "refine.mixture_total", "refine.label_source",
    "train.methods", "train.seeds", "train.lr", "train.epochs", "train.per_device_batch_size", "train.max_length",
    "train.overlong", "train.record_layout", "train.warmup_ratio", "train.lr_scheduler", "train.optimizer", "train.weight_decay",
    "train.max_grad_norm", "train.gradient_checkpointing", "train.padding_free", "train.attn_implementation",
    "train.liger_kernel", "train.logging_steps", "train.save_steps",
    "train.snapshot_steps", "eval.checkpoint.select",
    "eval.hub_revisions", "eval.prompt_type", "eval.num_shots", "eval.generation.backend", "eval.generation.temperature", "eval.generation.top_p",
    "eval.pass_at_k.benchmarks", "eval.pass_at_k.n", "eval.pass_at_k.k", "eval.pass_at_k.temperature",
    "eval.pass_at_k.top_p", "eval.grader", "eval.grading_timeout_s", "eval.theoremqa_rel_tol",
    "eval.general.tasks", "eval.general.model", "eval.general.apply_chat_template", "eval.general.batch_size",
    "eval.general.code_execution.enabled", "eval.general.code_execution.timeout_s", "eval.general.code_execution.memory_mb",
    "figures.formats", "figures.dpi", "figures.paper_model",
    "ablations.lr.methods", "ablations.lr.values", "ablations.mixture.method",
    "ablations.mixture.incorrect_fractions", "ablations.mixture.label_source", "ablations.teacher.method",
    "ablations.epochs.methods", "ablations.epochs.epochs", "ablations.flaw_source.methods",
    "ablations.critique_content.methods", "ablations.critique_content.variants",
    "ablations.critique_content.generic_file",
    "diagnostics.source", "diagnostics.revision", "diagnostics.split", "diagnostics.models",
    "diagnostics.attention_phases",
}
# Model settings kept for both roles (dtype, positions, sampling of special tokens, API settings).
for _role in ("student", "teacher"):
    KEEP |= {f"{_role}.{k}" for k in ("max_model_len", "gpu_memory_utilization", "cpu_threads",
                                      "skip_special_tokens", "answer_after", "stop_tokens", "base_url", "api_key_env", "max_concurrency",
                                      "request_timeout_s", "max_retries", "max_num_seqs",
                                      "server_start_timeout_s", "rpc_port")}


def leaf_keys(raw: dict, prefix: str = "") -> set[str]:
    """Dotted keys of params.yaml, free-form mappings (eval.benchmarks) counted as one key."""
    out = set()
    mappings = P.mapping_keys()
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and dotted not in mappings:
            out |= leaf_keys(value, dotted)
        else:
            out.add(dotted)
    return out


# Where each hub dataset a profile can read comes from (data.source -> repo of cgd/mirror.POOLS).
POOL_OF_SOURCE = {"webinstruct": "TIGER-Lab/WebInstructSub", "metamathqa": "meta-math/MetaMathQA",
                  "openmathinstruct2": "nvidia/OpenMathInstruct-2"}


def overlay(raw: dict, scratch: Path, models: dict[str, str]) -> tuple[dict, list[dict]]:
    """The rehearsal's overlay on the profiled params `raw`, and the swaps it makes (key, from,
    to, why). `models` maps each hub model id to its stand-in folder."""
    from cgd.runtime.device import bf16_supported

    out, swaps = {}, []  # the overlay, and every swap it makes

    def swap(key, value):
        before = P.lookup(raw, key)
        if before != value:
            P.assign(out, key, value)
            swaps.append({"key": key, "profile": before, "rehearsal": value, "why": SWAP_KEYS[key]})

    for key, value in SIZES.items():
        before = P.lookup(raw, key)
        value = value(before) if callable(value) else value
        if before != value:
            P.assign(out, key, value)
    for role in ("student", "teacher"):
        swap(f"{role}.model", models.get(P.lookup(raw, f"{role}.model"), P.lookup(raw, f"{role}.model")))
    teachers = {}
    for name, over in (P.lookup(raw, "ablations.teacher.teachers") or {}).items():
        over = {**over, **{k: 1 for k in ("teacher.tensor_parallel_size", "teacher.data_parallel_size", "teacher.nodes")
                           if k in over}}
        if over.get("teacher.model") in models:
            over["teacher.model"] = models[over["teacher.model"]]
        if "teacher.dtype" in over and not bf16_supported():
            over["teacher.dtype"] = "float32"
        if "openai" in (over.get("critique.backend"), over.get("refine.backend")):  # an API teacher: served here
            over = {k: raw[k.split(".")[0]]["backend"] if k.endswith(".backend") else v for k, v in over.items()
                    if k not in ("teacher.base_url", "teacher.api_key_env")}
        teachers[name] = over
    swap("ablations.teacher.teachers", teachers)
    # rollout.model (a flaw source) and critique_quality.model (the judge) keep the student's / teacher's
    # settings but for the keys they set: those get the role's swaps (one CPU process, GiB KV cache, eager).
    def author(spec, role="student"):
        if spec is None:
            return None
        spec = dict(spec)
        if "model" in spec:
            spec["model"] = models.get(spec["model"], spec["model"])
        for key, value in SWAP_VALUES.items():
            if key.startswith(f"{role}.") and key.removeprefix(f"{role}.") in spec:
                spec[key.removeprefix(f"{role}.")] = value
        if "dtype" in spec and not bf16_supported():
            spec["dtype"] = "float32"
        return spec
    swap("rollout.model", author(P.lookup(raw, "rollout.model")))
    swap("critique_quality.model", author(P.lookup(raw, "critique_quality.model"), "teacher"))
    swap("ablations.flaw_source.sources",
         {name: author(spec) for name, spec in (P.lookup(raw, "ablations.flaw_source.sources") or {}).items()})
    hub = scratch / "hub"
    if raw["data"]["source"] in POOL_OF_SOURCE:
        swap("data.hub_id", str(hub / POOL_OF_SOURCE[raw["data"]["source"]]))
    if "cft_gpt4o" in raw["train"]["methods"]:
        swap("webinstruct_cft.hub_id", str(hub / "TIGER-Lab/WebInstruct-CFT"))
    if raw["diagnostics"]["source"] in POOL_OF_SOURCE:
        swap("diagnostics.hub_id", str(hub / POOL_OF_SOURCE[raw["diagnostics"]["source"]]))
    swap("eval.hub_mirror", str(hub))
    if raw["eval"]["general"]["tasks"]:
        swap("eval.general.include_path", str(scratch / "hub" / "lm_eval_tasks"))
    for key, value in SWAP_VALUES.items():
        swap(key, value)
    if not bf16_supported():
        for role in ("student", "teacher"):
            swap(f"{role}.dtype", "float32")
    return out, swaps


def hub_models(raw: dict) -> list[str]:
    """Every hub model id the profiled params name (student, teacher, Table 8's teachers)."""
    ids = [raw["student"]["model"], raw["teacher"]["model"]]
    ids += [o.get("teacher.model") for o in (raw["ablations"]["teacher"]["teachers"] or {}).values()]
    ids += [(raw["rollout"].get("model") or {}).get("model"), (raw["critique_quality"].get("model") or {}).get("model")]
    ids += [o.get("model") for o in (raw["ablations"].get("flaw_source", {}).get("sources") or {}).values()]
    return [m for m in dict.fromkeys(ids) if m and not Path(m).exists()]


# ---------------------------------------------------------------- the real run's shape

def shape(raw: dict, stages: list[str]) -> dict:
    """What the profile's real run generates and trains, from its own sizes (upper bounds: every
    prompt runs to max_new_tokens)."""
    n = raw["data"]["n_train"] or 0
    ev = raw["eval"]
    problems = sum(benchmarks.REGISTRY[b].rows if k is None else k for b, k in ev["benchmarks"].items())
    passk = sum(benchmarks.REGISTRY[b].rows for b in ev["pass_at_k"]["benchmarks"]) * ev["pass_at_k"]["n"]
    trainings = [s for s in stages if s.startswith("train@")]
    evals = [s for s in stages if s.startswith("eval@") or s == "eval_base"]
    ablations = [s for s in stages if s.startswith("ablate_")]
    t = raw["train"]
    steps = math.ceil(n / t["global_batch_size"]) * t["epochs"]
    mix = raw["ablations"]["mixture"]
    gen = {
        "rollout": {"prompts": n, "max_tokens": n * raw["rollout"]["max_new_tokens"]},
        "critique": {"prompts": n, "max_tokens": n * raw["critique"]["max_new_tokens"]},
        "refine": {"prompts": n, "max_tokens": n * raw["refine"]["max_new_tokens"]},
        # each flaw source reruns stages 02-04 on the same questions (ablations.flaw_source)
        "stages 02-04 per flaw source": {
            "prompts": 3 * n, "max_tokens": n * sum(raw[s]["max_new_tokens"] for s in ("rollout", "critique", "refine"))},
        "eval (each)": {"prompts": problems + passk,
                        "max_tokens": problems * ev["generation"]["max_new_tokens"] + passk * ev["generation"]["max_new_tokens"]},
    }
    return {"stages": len(stages), "trainings": len(trainings), "evaluations": len(evals),
            "ablation_points": len(ablations), "flaw_sources": sum(s.startswith("flaw_source_data@") for s in stages),
            "generation": gen,
            "optimizer_steps_per_main_run": steps,
            "optimizer_steps_per_mixture_point": math.ceil((mix["total"] or 0) / t["global_batch_size"]) * t["epochs"],
            "evaluation_runs": len(evals) + len(ablations)}


# ---------------------------------------------------------------- scratch copy


def scratch_copy(scratch: Path) -> None:
    """The repository's tracked and unignored files (no outputs, no venv) into `scratch`."""
    if scratch.exists():
        shutil.rmtree(scratch)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            dst = scratch / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    # dvc.lock, the committed figures and metrics are the user's run's: the rehearsal makes its own
    # (placeholders such as metrics/ablations/.gitkeep stay, as in any clone).
    (scratch / "dvc.lock").unlink(missing_ok=True)
    for stale in ("figures", "metrics"):
        for path in sorted((scratch / stale).rglob("*"), reverse=True):
            if path.is_file() and path.name not in (".gitkeep", "README.md"):
                path.unlink()
    subprocess.run([DVC, "config", "--local", "core.no_scm", "true"], cwd=scratch, check=True,
                   capture_output=True)


def share_cache(scratch: Path, cache: Path) -> None:
    """One DVC cache for every rehearsal (not the user's): a stage that already ran with the same
    command, dependencies and params (the embedded model's conversion, first of all) is restored
    from DVC's run cache instead of run again."""
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([DVC, "config", "--local", "cache.dir", str(cache)], cwd=scratch, check=True,
                   capture_output=True)


def punkt_standin(root: Path) -> Path:
    """NLTK's punkt_tab tokenizer parameters with no learned abbreviations: the IFEval scorer splits
    sentences with it, and NLTK downloads it at run time (not possible here). Same file layout."""
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("")
    return root


def lm_eval_tasks(tasks: list[str], out: Path) -> list[str]:
    """Local copies of lm-eval tasks: each leaf task includes lm-eval's own YAML and reads its rows
    from local files instead of the hub; groups stay lm-eval's own (their subtasks resolve to these).
    Returns the leaf tasks written."""
    from cgd.rehearsal import lmeval_local

    return lmeval_local.write(tasks, out)


# ---------------------------------------------------------------- running


def _stage_names(scratch: Path, env: dict) -> list[str]:
    out = subprocess.run([DVC, "stage", "list", "--name-only"], cwd=scratch, env=env, check=True,
                         capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _index_rows(index_md: str) -> list[dict]:
    rows = []
    for line in index_md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("paper", "---") and not cells[0].startswith("-"):
            rows.append({"paper": cells[0], "files": cells[1], "status": cells[2]})
        if line.startswith("## ") and rows:
            break
    return rows


def expected_items(raw: dict) -> set[str]:
    """The tables and figures a profile's params enable (INDEX.md must show each as done)."""
    from cgd.reporting import critique_content, cross_family, flaw_source, tables

    main = tables.main_table(raw["data"]["source"], raw["figures"]["paper_model"])  # table1, 3, 6 or 7
    # the Qwen2.5-Math profile evaluates the cross-family table's five benchmarks, not Table 1's eight
    first = cross_family.ITEM if raw["figures"]["paper_model"] == cross_family.PAPER_MODEL else f"Table {main[5:]}"
    on = {first, "Table 5", "Table 9", "Table 10", "Table 11", "Fig. 2",
          "Fig. 4", "Fig. 8", "Fig. 9", "Fig. 10", "Fig. 11", "Format drift",
          "pass@k and reasoning length (revised paper)"}
    on |= {"Critique quality (revised paper)"} if raw["critique_quality"]["rows"] else set()
    ab = raw["ablations"]
    if raw["eval"]["general"]["tasks"]:
        on.add("Table 2")
    if ab["lr"]["values"] and ab["lr"]["methods"]:
        on |= {"Table 4", "Fig. 7"}
    if ab["teacher"]["teachers"]:
        on.add("Table 8")
    if ab["mixture"]["incorrect_fractions"]:
        on.add("Fig. 5")
    if ab["epochs"]["methods"]:
        on.add("Fig. 6")
    if ab["flaw_source"]["sources"]:
        on.add(flaw_source.ITEM)
    if ab["critique_content"]["variants"]:
        on.add(critique_content.ITEM)
    if len(raw["train"]["seeds"]) > 1:
        on.add("Seeds (App. A)")
    return on


def run(profile: str | Path, scratch: str | Path | None = None, standin_cache: str | Path | None = None) -> dict:
    from cgd.config import profiles
    from cgd.rehearsal import mirror, standins

    profile = Path(profile)
    name = profile.stem
    scratch = Path(scratch or REPO / "rehearsals" / name).resolve()
    cache = Path(standin_cache or os.environ.get("CGD_STANDIN_CACHE", REPO / ".cache" / "standins")).resolve()
    t0 = time.perf_counter()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a CI log shows each line as it comes
    scratch_copy(scratch)
    share_cache(scratch, cache.parent / "dvc")
    params_path = scratch / "params.yaml"
    profiles.apply_profile(profile, params_path, scratch / "dvc.yaml")
    raw = yaml.safe_load(params_path.read_text())
    real = json.loads(json.dumps(raw))  # the profile's own sizes, for the run's shape

    # Stand-ins for every hub model, cached by hub id and this module's and standins.py's source.
    questions = mirror.questions(EXTRA_ROWS)  # the stand-ins see the questions they will be asked
    models = {}
    built = []
    key = _source_digest(questions)
    for hub_id in hub_models(raw):
        folder = cache / key / hub_id
        if not (folder / "standin.json").exists():
            print(f"building the stand-in for {hub_id} (cached in {folder.parent.parent})", flush=True)
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            standins.build(hub_id, tmp, questions)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        models[hub_id] = str(folder)
        built.append(json.loads((folder / "standin.json").read_text()))
    mirror.write_all(scratch / "hub", EXTRA_ROWS)
    nltk_dir = punkt_standin(scratch / "nltk_data")
    leaf_tasks = lm_eval_tasks(list(raw["eval"]["general"]["tasks"]), scratch / "hub" / "lm_eval_tasks") \
        if raw["eval"]["general"]["tasks"] else []

    over, swaps = overlay(raw, scratch, models)
    profiles.apply_overlay(over, params_path, scratch / "dvc.yaml")
    swaps.append({"key": "NLTK_DATA", "profile": "downloaded by lm-eval", "rehearsal": str(nltk_dir),
                  "why": "punkt_tab with no learned abbreviations (IFEval's sentence splitter); no download here"})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "NLTK_DATA": str(nltk_dir)}
    stages = _stage_names(scratch, env)
    report = {"profile": name, "scratch": str(scratch), "swaps": swaps, "standins": built,
              "lm_eval_local_tasks": leaf_tasks, "shape": shape(real, stages)}
    _print_start(report)
    setup_s = time.perf_counter() - t0
    with kernel.warm_server(scratch, env) as env:
        timings, rc = _repro(scratch, env)
    report.update({"setup_seconds": round(setup_s, 1), "stage_seconds": timings, "repro_rc": rc,
                   "total_seconds": round(time.perf_counter() - t0, 1)})
    index = scratch / "figures" / "INDEX.md"
    rows = _index_rows(index.read_text()) if index.exists() else []
    want = expected_items(raw)
    status = {r["paper"]: r["status"] for r in rows}
    report["index"] = status
    report["missing"] = sorted(k for k in want if not status.get(k, "").startswith("done"))
    report["generation_errors"] = outcome.generation_errors(scratch)
    report["ok"] = rc == 0 and not report["missing"] and not report["generation_errors"]
    if index.exists():
        index.write_text(index.read_text() + _index_section(report))
    (scratch / "rehearsal.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _source_digest(questions: list[str]) -> str:
    import hashlib

    h = hashlib.sha256("\n".join(questions).encode())
    for f in ("rehearsal/standins.py", "distill/prompts.py", "generation/chat.py"):
        h.update((REPO / "cgd" / f).read_bytes())
    return h.hexdigest()[:12]


def _print_start(report: dict) -> None:
    print(f"rehearsing {report['profile']} in {report['scratch']}")
    print("swapped (what this machine cannot have; everything else is the profile's or a size):")
    for s in report["swaps"]:
        print(f"  {s['key']}: {s['profile']!r} -> {s['rehearsal']!r}  ({s['why']})")
    sh = report["shape"]
    print(f"the real run: {sh['stages']} DVC stages, {sh['trainings']} trainings, {sh['evaluations']} "
          f"evaluations, {sh['ablation_points']} ablation points; {sh['optimizer_steps_per_main_run']} "
          "optimizer steps per main run")
    for stage, g in sh["generation"].items():
        print(f"  {stage}: {g['prompts']:,} prompts, up to {g['max_tokens']:,} generated tokens")
    sys.stdout.flush()


_RUNNING = re.compile(r"Running stage '([^']+)'|Stage '([^']+)' is cached")


def _repro(scratch: Path, env: dict) -> tuple[dict, int]:
    """`dvc repro` in the scratch copy, its output streamed; seconds per stage from the moment
    each stage starts to the next."""
    proc = subprocess.Popen([DVC, "repro"], cwd=scratch, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    timings: dict[str, float] = {}
    current, since = None, time.perf_counter()
    with open(scratch / "rehearsal.log", "w") as log:
        for line in proc.stdout:
            log.write(line)
            m = _RUNNING.search(line)
            if m:
                now = time.perf_counter()
                if current:
                    timings[current] = round(now - since, 1)
                current, since = m.group(1) or f"{m.group(2)} (restored from the run cache)", now
                print(f"[{time.strftime('%H:%M:%S')}] {current}", flush=True)
            elif "ERROR" in line or "Traceback" in line:
                print(line.rstrip(), flush=True)
    rc = proc.wait()
    if current:
        timings[current] = round(time.perf_counter() - since, 1)
    return timings, rc


def _index_section(report: dict) -> str:
    lines = ["", "## Rehearsal", "",
             f"Profile `{report['profile']}` rehearsed with small stand-in models and fixture data (cgd/rehearsal/rehearse.py): "
             "sizes shrunk, and only these swapped:", "", "| key | profile | rehearsal | why |", "| --- | --- | --- | --- |"]
    lines += [f"| `{s['key']}` | `{s['profile']}` | `{s['rehearsal']}` | {s['why']} |" for s in report["swaps"]]
    lines += ["", f"Time: {report['total_seconds']:.0f} s in all; per stage:", "", "| stage | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["stage_seconds"].items()]
    lines += ["", f"Enabled by the profile and not done: {', '.join(report['missing']) or 'none'}."]
    errors = [f"{p}: {n} x {m}" for p, ms in report["generation_errors"].items() for m, n in ms.items()]
    lines += [f"Generation errors (besides over-long prompts): {'; '.join(errors) or 'none'}.", ""]
    return "\n".join(lines)
