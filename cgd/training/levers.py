"""The training speed levers of stage 05, resolved once per run from params and the machine.

Each lever is a `train.*` key that is `auto`, true or false (or a kernel name). `auto` turns a lever
on only where it was measured to pay and where it keeps the run's arithmetic:

    padding_free         CUDA and train.overlong drop. A micro-batch's rows go in as one row, kept
                         apart by position_ids (TRL's padding-free collator), so no pad token is
                         computed; rows per optimizer step, the loss normalisation (completion tokens
                         of the whole accumulated batch) and the completion-only mask are those of
                         padded batches (tests/test_levers.py checks losses and masks on CPU). Off on
                         CPU, where the demo trains one row per micro-batch and has no padding.
                         TRL truncates no padding-free row, hence drop only.
    attn_implementation  flex_attention for padding-free batches on CUDA: attention stays within
                         each row's block (sdpa would get a dense block-diagonal mask, quadratic in
                         the micro-batch's total length); sdpa otherwise.
    liger_kernel         Liger's Triton RMSNorm, SwiGLU and RoPE where CUDA, Triton and liger-kernel
                         are present. TRL 1.16 applies only these layer kernels and keeps its own
                         fused LM head (the completion-only scoring), so the loss path is unchanged.

Parameters stay fp32 in-process (bf16 autocast); DeepSpeed keeps bf16 parameters with its own fp32
master copy. Plain bf16 parameters would drop the paper's updates: at lr 1e-6 an AdamW step is
below half a bf16 ulp of a typical weight (docs/training-speed.md, tests/test_levers.py).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

from cgd.config import ParamsError, TrainConfig


@dataclass(frozen=True)
class Levers:
    padding_free: bool
    attn_implementation: str
    liger_kernel: bool
    why: dict  # lever -> how it was decided (recorded in stage 05's metrics)

    def as_dict(self) -> dict:
        return asdict(self)


def liger_available() -> str | None:
    """None where Liger's kernels can run here, else what is missing."""
    missing = [name for name, module in (("triton", "triton"), ("liger-kernel", "liger_kernel"))
               if importlib.util.find_spec(module) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def resolve(cfg: TrainConfig, cuda: bool, liger_missing: str | None = None) -> Levers:
    """The levers of one run on this machine (`cuda`: training on a CUDA device; `liger_missing`:
    `liger_available()`'s answer, passed in so tests can stand in for a GPU machine)."""
    why = {}
    if cfg.padding_free == "auto":
        padding_free = cuda and cfg.overlong == "drop"
        why["padding_free"] = ("auto: CUDA and overlong drop" if padding_free else
                               "auto: off on CPU (a row per micro-batch there)" if not cuda else
                               "auto: off under overlong truncate (TRL truncates no padding-free row)")
    else:
        padding_free, why["padding_free"] = cfg.padding_free, "set in params"
    if cfg.attn_implementation == "auto":
        attn = "flex_attention" if padding_free and cuda else "sdpa"
        why["attn_implementation"] = f"auto: {attn}"
    else:
        attn, why["attn_implementation"] = cfg.attn_implementation, "set in params"
    if cfg.liger_kernel == "auto":
        liger = cuda and liger_missing is None
        why["liger_kernel"] = ("auto: CUDA, Triton and liger-kernel present" if liger else
                               "auto: off without CUDA" if not cuda else f"auto: off, {liger_missing}")
    else:
        liger, why["liger_kernel"] = cfg.liger_kernel, "set in params"
        if liger and (not cuda or liger_missing):
            raise ParamsError("train.liger_kernel", f"is true, but {'there is no CUDA device' if not cuda else liger_missing}",
                              "set it to auto (on only where Liger's Triton kernels can run) or false")
    return Levers(padding_free, attn, liger, why)


def sft_overrides(levers: Levers, max_length: int) -> dict:
    """The SFTConfig fields the levers set. Padding-free batches take max_length None: TRL refuses a
    max_length it would not enforce, and fit_length (overlong drop) already holds every record to it."""
    return {"padding_free": levers.padding_free, "use_liger_kernel": levers.liger_kernel,
            "max_length": None if levers.padding_free else max_length}
