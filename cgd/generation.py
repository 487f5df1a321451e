"""One generation interface, four backends chosen in params (`<stage>.backend`).

- transformers: batched `generate` with the chat template, prompts sorted by length to cut padding,
  bf16 where the hardware supports it. The CPU demo and tests run this one.
- vllm: offline `LLM(...).chat(...)` with `SamplingParams`, tensor parallel, for paper-scale runs.
- openai: any OpenAI-compatible endpoint (`vllm serve`, a hosted model) through the `openai`
  client, which retries 408/409/429/5xx and timeouts with exponential backoff; concurrency is
  bounded by a thread pool. The key comes from the environment variable named in params.
- reference: a deterministic oracle for tests and ablations: it critiques by checking the student's
  final answer against gold and refines with the reference solution.

Every backend maps a list of `Request`s to `Completion`s in the same order; failures become
completions with finish_reason "error", never exceptions that lose the batch.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from cgd import labels
from cgd.params import GenerationConfig, ModelConfig

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Request:
    id: str
    messages: list[dict]
    row: dict = field(default_factory=dict)  # the source row; only the reference oracle reads it


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Backend(ABC):
    name: str

    @abstractmethod
    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        """Completions for `requests`, in order. `seed` makes sampling reproducible per call;
        `gen` overrides the backend's generation settings for this call (e.g. a short follow-up)."""

    def choose(self, requests: list[Request], options: list[str], seed: int,
               gen: GenerationConfig) -> list[Completion]:
        """Pick one of `options` as the reply to each request; text "" when none could be read.

        Default: generate a few tokens with `gen` and take the first option word in the reply.
        Backends that can score continuations override this with a constrained choice.
        """
        out = []
        for c in self.generate(requests, seed, gen):
            words = re.findall(r"[a-z]+", c.text.lower())
            pick = next((w for w in words if w in options), "")
            out.append(Completion(pick, c.finish_reason, c.prompt_tokens, c.completion_tokens, c.error))
        return out


# ---------------------------------------------------------------- transformers


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: ModelConfig, gen: GenerationConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cgd.device import device, torch_dtype

        self.gen = gen
        self.tokenizer = AutoTokenizer.from_pretrained(model.model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = torch_dtype(model.dtype)
        self.device = device()
        self.model = AutoModelForCausalLM.from_pretrained(model.model, dtype=self.dtype)
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos_ids = sorted(e for e in eos if e is not None)
        self._torch = torch

    def encode(self, request: Request) -> list[int]:
        text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                  tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        torch, gen = self._torch, gen or self.gen
        encoded = [self.encode(r) for r in requests]
        # Longest first: similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i]))
        results: list[Completion | None] = [None] * len(requests)
        sampling = gen.temperature > 0
        kwargs = dict(max_new_tokens=gen.max_new_tokens, do_sample=sampling,
                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids)
        if sampling:
            kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
        else:  # plain greedy: clear sampling defaults some generation_configs carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        for start in range(0, len(order), gen.batch_size):
            idx = order[start:start + gen.batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, padding=True,
                                       padding_side="left", return_tensors="pt").to(self.device)
            torch.manual_seed(seed + start)
            with torch.inference_mode():
                out = self.model.generate(**batch, **kwargs)
            new_tokens = out[:, batch["input_ids"].shape[1]:].tolist()
            for j, i in enumerate(idx):
                results[i] = self._completion(new_tokens[j], len(encoded[i]))
        return results  # type: ignore[return-value]

    def choose(self, requests: list[Request], options: list[str], seed: int,
               gen: GenerationConfig) -> list[Completion]:
        """Constrained choice: the option whose tokens the model gives the highest log-likelihood
        as the start of its reply. Small models answer a one-word question in free text
        ("The answer is ..."); scoring the options reads their judgement without parsing."""
        torch = self._torch
        option_ids = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        out = []
        for request in requests:
            prompt = self.encode(request)
            seqs = [prompt + ids for ids in option_ids]
            batch = self.tokenizer.pad({"input_ids": seqs}, padding=True, padding_side="right",
                                       return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            scores = []
            for j, ids in enumerate(option_ids):
                positions = range(len(prompt) - 1, len(prompt) - 1 + len(ids))
                scores.append(sum(logprobs[j, p, t].item() for p, t in zip(positions, ids)))
            best = max(range(len(options)), key=lambda j: scores[j])
            out.append(Completion(options[best], "stop", len(prompt), 0))
        return out

    def _completion(self, tokens: list[int], prompt_len: int) -> Completion:
        stop_at = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        kept = tokens if stop_at is None else tokens[:stop_at]
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        finish: FinishReason = "stop" if stop_at is not None else "length"
        return Completion(text, finish, prompt_len, len(kept) + (stop_at is not None))


# ---------------------------------------------------------------- vLLM


def vllm_engine_args(model: ModelConfig, seed: int) -> dict:
    """Keyword arguments for `vllm.LLM` (kept separate so tests can check them without vLLM)."""
    return {
        "model": model.model,
        "tensor_parallel_size": model.tensor_parallel_size,
        "max_model_len": model.max_model_len,
        "dtype": model.dtype,
        "seed": seed,
    }


def vllm_sampling_args(gen: GenerationConfig, seed: int) -> dict:
    """Keyword arguments for `vllm.SamplingParams`."""
    return {"temperature": gen.temperature, "top_p": gen.top_p, "max_tokens": gen.max_new_tokens,
            "seed": seed}


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, model: ModelConfig, gen: GenerationConfig, seed: int):
        from vllm import LLM

        self.gen = gen
        self.llm = LLM(**vllm_engine_args(model, seed))

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        from vllm import SamplingParams

        outputs = self.llm.chat([r.messages for r in requests],
                                SamplingParams(**vllm_sampling_args(gen or self.gen, seed)), use_tqdm=True)
        results = []
        for out in outputs:
            choice = out.outputs[0]
            finish = {"stop": "stop", "length": "length"}.get(choice.finish_reason, "error")
            results.append(Completion(choice.text.strip(), finish, len(out.prompt_token_ids or []),
                                      len(choice.token_ids),
                                      None if finish != "error" else str(choice.finish_reason)))
        return results


# ---------------------------------------------------------------- OpenAI-compatible endpoint


def openai_request(model: ModelConfig, gen: GenerationConfig, messages: list[dict], seed: int) -> dict:
    """The chat-completions request body (without credentials)."""
    return {"model": model.model, "messages": messages, "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature, "top_p": gen.top_p, "seed": seed}


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: ModelConfig, gen: GenerationConfig, role: str):
        import openai

        key = os.environ.get(model.api_key_env)
        if not key:
            raise RuntimeError(
                f"environment variable {model.api_key_env} (named by {role}.api_key_env) is not "
                "set; export it with the endpoint's API key (any non-empty value for a local "
                "`vllm serve`)")
        self.model, self.gen = model, gen
        self.client = openai.OpenAI(base_url=model.base_url, api_key=key,
                                    max_retries=model.max_retries, timeout=model.request_timeout_s)
        self._openai = openai

    def _one(self, request: Request, seed: int, gen: GenerationConfig) -> Completion:
        try:
            resp = self.client.chat.completions.create(
                **openai_request(self.model, gen, request.messages, seed))
        except self._openai.APIError as exc:  # includes timeouts and connection errors
            status = getattr(exc, "status_code", None)
            return Completion("", "error", error=f"{type(exc).__name__}" + (f" {status}" if status else ""))
        choice = resp.choices[0]
        usage = resp.usage
        return Completion((choice.message.content or "").strip(),
                          "length" if choice.finish_reason == "length" else "stop",
                          usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.model.max_concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, seed, gen or self.gen), requests))


# ---------------------------------------------------------------- reference oracle


class ReferenceBackend(Backend):
    """Critique = compare the student's final answer with gold; refine = the reference solution."""

    name = "reference"

    def __init__(self, stage: str):
        if stage not in ("critique", "refine"):
            raise ValueError(f"the reference backend critiques and refines; it cannot do {stage}")
        self.stage = stage

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        return [self._critique(r.row) if self.stage == "critique" else self._refine(r.row)
                for r in requests]

    @staticmethod
    def _critique(row: dict) -> Completion:
        gold, student = row.get("reference_answer"), row.get("student_answer", "")
        stated = labels.final_answer(student)
        if gold is None:
            return Completion("There is no reference answer to check this solution against.", "stop")
        if stated is None:
            verdict, text = "wrong", "The solution never states a final answer."
        elif labels.verify(gold, student):
            verdict, text = "right", f"The final answer {stated} agrees with the reference answer {gold}."
        else:
            verdict, text = "wrong", f"The final answer {stated} disagrees with the reference answer {gold}."
        return Completion(f"{text}\n\nConclusion: {verdict}", "stop")

    @staticmethod
    def _refine(row: dict) -> Completion:
        text, gold = row["reference_solution"], row.get("reference_answer")
        if gold is not None and "\\boxed" not in text:
            # End in the \boxed{} form the rollout prompt asks for (GSM8K's "#### 72" line goes).
            text = re.sub(r"\n?####\s*\S.*$", "", text.rstrip())
            text += f"\n\nThe final answer is $\\boxed{{{gold}}}$."
        return Completion(text, "stop")


def make_backend(stage: str, role: str, gen: GenerationConfig, model: ModelConfig, seed: int) -> Backend:
    """The backend `gen.backend` names, loaded for `model` (the student or the teacher)."""
    if gen.backend == "transformers":
        return TransformersBackend(model, gen)
    if gen.backend == "vllm":
        return VLLMBackend(model, gen, seed)
    if gen.backend == "openai":
        return OpenAIBackend(model, gen, role)
    return ReferenceBackend(stage)
