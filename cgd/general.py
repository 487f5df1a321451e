"""General capability (paper Table 2: IFEval, MUSR, TruthfulQA, BBH) via lm-evaluation-harness.

`eval.general.tasks` maps each lm-eval task (or group) to the metric reported for it, e.g.
`leaderboard_ifeval: prompt_level_strict_acc,none`. The harness downloads its datasets from the
hub, so these suites need network access (or HF_DATASETS_CACHE filled beforehand); an empty
mapping (the CPU demo) skips them. Extra or local tasks (YAML files) load from
`eval.general.include_path`.

`leaderboard_musr` and `leaderboard_bbh` are lm-eval groups: their metric is the group's
`aggregate_metric_list` result and they have no "n-samples" entry, so their document count is the
sum over their subtasks. IFEval's scorer needs NLTK's `punkt_tab` tokenizer and lm-eval downloads it
when the task module is imported; offline, `check_resources` fails before any generation instead,
naming what to fetch.
"""

from __future__ import annotations

import time

from cgd.params import GeneralConfig, ModelConfig


def model_args(kind: str, path: str, model: ModelConfig, dtype: str, device: str | None) -> dict:
    """lm-eval model_args for a local folder or hub id, with the student's vLLM settings."""
    if kind == "vllm":
        args = {"pretrained": path, "dtype": model.dtype, "tensor_parallel_size": model.tensor_parallel_size,
                "max_model_len": model.max_model_len, "enforce_eager": model.enforce_eager,
                "gpu_memory_utilization": model.gpu_memory_utilization}
        if model.kv_cache_gib is not None:
            args["kv_cache_memory_bytes"] = int(model.kv_cache_gib * 2**30)
        return args
    args = {"pretrained": path, "dtype": dtype}
    if device:
        args["device"] = device
    return args


def check_resources(tasks) -> None:
    """Fail before generating when a task needs data lm-eval would download at run time: IFEval's
    NLTK punkt_tab tokenizer (found through NLTK_DATA or nltk's default folders)."""
    if not any("ifeval" in t for t in tasks):
        return
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        raise RuntimeError(
            "IFEval (eval.general.tasks) needs NLTK's punkt_tab tokenizer, which is not installed and would "
            "be downloaded at run time. Fetch it where there is network: `python -m nltk.downloader -d "
            "<folder> punkt_tab`, copy <folder> here and set NLTK_DATA=<folder> (searched: "
            f"{', '.join(nltk.data.path)})") from None


def _docs(res: dict, task: str) -> int | None:
    """Documents scored for a task, or for a group the sum over its subtasks."""
    own = (res.get("n-samples", {}).get(task) or {}).get("effective")
    if own is not None:
        return own
    subtasks = res.get("group_subtasks", {}).get(task)
    if not subtasks:
        return None
    counts = [_docs(res, t) for t in subtasks]
    return None if any(c is None for c in counts) else sum(counts)


def run(path: str, cfg: GeneralConfig, model: ModelConfig, seed: int, dtype: str = "bfloat16",
        device: str | None = None) -> dict:
    """Run the configured tasks on one model; per task: metric, value (percent), stderr, docs."""
    if not cfg.tasks:
        return {}
    check_resources(cfg.tasks)
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=cfg.include_path) if cfg.include_path else TaskManager()
    start = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=cfg.model, model_args=model_args(cfg.model, path, model, dtype, device),
        tasks=list(cfg.tasks), batch_size=cfg.batch_size, limit=cfg.limit, task_manager=manager,
        apply_chat_template=cfg.apply_chat_template, log_samples=False, random_seed=seed,
        numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    out = {}
    for task, metric in cfg.tasks.items():
        table = res.get("groups", {}).get(task) or res["results"].get(task)
        if table is None or metric not in table:
            known = sorted(k for k in (table or {}) if "," in k and "_stderr" not in k)
            raise KeyError(f"eval.general.tasks.{task}: lm-eval reported no '{metric}'; it reported {known}")
        name, _, filt = metric.partition(",")
        stderr = table.get(f"{name}_stderr,{filt}")
        out[task] = {"metric": metric, "value": round(100 * float(table[metric]), 2),
                     "stderr": round(100 * float(stderr), 2) if isinstance(stderr, (int, float)) else None,
                     "docs": _docs(res, task), "subtasks": res.get("group_subtasks", {}).get(task)}
    out["_seconds"] = round(time.perf_counter() - start, 1)
    return out
