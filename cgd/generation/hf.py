"""transformers backend: batched `generate` with the chat template, prompts sorted by length to cut
padding, bf16 where the hardware supports it. Tests and machines without vLLM."""

from __future__ import annotations

import time
from dataclasses import replace

from cgd.config import GenerationConfig, ModelConfig
from cgd.generation import chat
from cgd.generation.base import (
    Backend,
    Completion,
    FinishReason,
    Request,
    cut_at_stop,
    prompt_token_ids,
    request_seed,
    stop_token_ids,
)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: ModelConfig, gen: GenerationConfig, role: str = "student"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cgd.runtime.device import device, torch_dtype

        start = time.perf_counter()
        self.gen = gen
        self.skip_special_tokens = model.skip_special_tokens
        self.tokenizer = chat.prepare(AutoTokenizer.from_pretrained(model.model))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = torch_dtype(model.dtype)
        self.device = device()
        self.model = AutoModelForCausalLM.from_pretrained(model.model, dtype=self.dtype)
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        eos |= set(stop_token_ids(self.tokenizer, model.stop_tokens, role))
        self.eos_ids = sorted(e for e in eos if e is not None)
        self._torch = torch
        self.startup_seconds = time.perf_counter() - start

    def encode(self, request: Request) -> list[int]:
        return prompt_token_ids(self.tokenizer, request)

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
            # One generator per batch (transformers samples a batch from one stream): seeded by
            # the batch's first request, so a rerun with the same batching repeats exactly.
            torch.manual_seed(request_seed(seed, requests[idx[0]].id))
            # Stop strings (a harness prompt's): transformers stops a sequence at one (the batch's
            # requests share them: one evaluation prompt type), and the text is cut before it as vLLM cuts.
            stops = requests[idx[0]].stop
            extra = {"stop_strings": list(stops), "tokenizer": self.tokenizer} if stops else {}
            with torch.inference_mode():
                out = self.model.generate(**batch, **kwargs, **extra)
            new_tokens = out[:, batch["input_ids"].shape[1]:].tolist()
            for j, i in enumerate(idx):
                c = self._completion(new_tokens[j], len(encoded[i]))
                text, hit = cut_at_stop(c.text, requests[i].stop)
                results[i] = replace(c, text=text.strip(), finish_reason="stop") if hit else c
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
        text = self.tokenizer.decode(kept, skip_special_tokens=self.skip_special_tokens).strip()
        finish: FinishReason = "stop" if stop_at is not None else "length"
        return Completion(text, finish, prompt_len, len(kept) + (stop_at is not None))
