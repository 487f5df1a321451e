"""Training throughput on the device at hand: the matmul peak, parameter counts, MFU and the bare
TRL baseline that bench/train.py and bench/gpu_check.py measure stage 05 against.

MFU here is the 6 x parameters x non-pad tokens training FLOP count (attention's own FLOPs left
out, as in the anchors the issue cites) over the bf16 matmul peak measured in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path


def mfu(tokens_per_s: float, params: int, peak_tflops: float) -> float:
    return 6 * params * tokens_per_s / (peak_tflops * 1e12)


def matmul_peak_tflops(reps: int = 8) -> tuple[float, str]:
    """bf16 matmul throughput of the device the runs trained on (the GPU where there is one: a
    CPU peak would make a GPU run read as several hundred percent of it), and the device's name."""
    import torch

    dtype = torch.bfloat16
    cuda = torch.cuda.is_available()
    device, n = ("cuda", 8192) if cuda else ("cpu", 2048)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(reps * (10 if cuda else 1)):
        a @ b
    sync()
    flops = 2 * n ** 3 * reps * (10 if cuda else 1)
    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    return flops / (time.perf_counter() - start) / 1e12, name


def bare_trl(model_dir: str, recs: list[dict], out: str, batch: int | None = None,
             max_length: int = 1024, max_steps: int = -1, clock=None) -> tuple[int, float]:
    """One epoch of a bare SFTTrainer: TRL's default SFTConfig, or with `batch` our batch settings
    (that many rows per step, no gradient checkpointing, fp32 weights under bf16 autocast), padded
    batches in random order. `clock` (a train.StepClock) times it after its first step too."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from cgd.generation import chat
    from cgd.runtime import device

    cpu = not torch.cuda.is_available()
    same = {} if batch is None else dict(per_device_train_batch_size=batch, gradient_checkpointing=False,
                                         bf16=device.bf16_supported(), max_length=max_length)
    args = SFTConfig(output_dir=out, use_cpu=cpu, num_train_epochs=1, max_steps=max_steps,
                     save_strategy="no", report_to="none", **same)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **({} if batch is None else {"dtype": torch.float32}))
    # The chat layout ours trains on (identical for a model whose template takes a system turn)
    tokenizer = chat.prepare(AutoTokenizer.from_pretrained(model_dir))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(recs), processing_class=tokenizer)
    if clock is not None:
        clock.tokens = lambda: trainer._total_train_tokens
        trainer.add_callback(clock.callback)
    start = time.perf_counter()
    if clock is not None:
        clock.start = start
    trainer.train()
    if not cpu:
        torch.cuda.synchronize()
    return trainer._total_train_tokens, time.perf_counter() - start


def count_params(model_dir: str) -> int:
    """Parameters in the folder's safetensors files, read from their headers (no weights loaded)."""
    import math

    from safetensors import safe_open

    total = 0
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total
