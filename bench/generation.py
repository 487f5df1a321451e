"""Generation throughput: our `transformers` backend vs a naive one-prompt-at-a-time fp32 loop.

Same model (the embedded SmolLM2-135M-Instruct), same 64 GSM8K rollout prompts, same
max_new_tokens, greedy decoding, one run. The backend batches length-sorted prompts in bf16 where
the CPU supports it; the baseline calls `generate` per prompt in fp32. Prints completion tokens
per second for each and the ratio (target >= 6x on the 2-core demo machine).

    .venv/bin/python bench/generation.py [--prompts 64] [--max-new-tokens 128] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cgd import data, prompts
from cgd import params as P
from cgd.generation import Request, TransformersBackend


def naive(model_dir: str, requests: list[Request], max_new_tokens: int) -> tuple[int, float]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokens, start = 0, time.perf_counter()
    for r in requests:
        ids = tok.apply_chat_template(r.messages, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    cfg = P.load("params.yaml", {"rollout.max_new_tokens": args.max_new_tokens,
                                 "rollout.temperature": 0.0, "rollout.batch_size": args.batch_size})
    rows = [r for _, r in zip(range(args.prompts), data.load_pool(cfg.data))]
    prompt = prompts.load("rollout")
    requests = [Request(str(i), prompt.render(question=r["question"])) for i, r in enumerate(rows)]

    backend = TransformersBackend(cfg.student, cfg.rollout)
    start = time.perf_counter()
    ours = backend.generate(requests, seed=0)
    t_ours = time.perf_counter() - start
    tok_ours = sum(c.completion_tokens for c in ours)

    tok_naive, t_naive = naive(cfg.student.model, requests, args.max_new_tokens)
    r_ours, r_naive = tok_ours / t_ours, tok_naive / t_naive
    print(f"prompts: {len(requests)}, max_new_tokens: {args.max_new_tokens}, model: {cfg.student.model}")
    print(f"naive fp32, one prompt at a time: {tok_naive:6d} tokens in {t_naive:6.1f} s = {r_naive:6.1f} tok/s")
    print(f"backend ({backend.dtype}, batch {args.batch_size}, length-sorted): "
          f"{tok_ours:6d} tokens in {t_ours:6.1f} s = {r_ours:6.1f} tok/s")
    print(f"ratio: {r_ours / r_naive:.1f}x")


if __name__ == "__main__":
    main()
