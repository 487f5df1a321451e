"""vllm_server backend: requests to vLLM's OpenAI-compatible server, which cgd/generation/vllm_server.py
starts for the stage with `data_parallel_size` replicas (the offline engine takes one replica only)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cgd.config import GenerationConfig, ModelConfig
from cgd.generation import chat
from cgd.generation.base import (
    Backend,
    Completion,
    Request,
    cut_at_stop,
    option_tokens,
    prompt_token_ids,
    request_seed,
    stop_token_ids,
)
from cgd.generation.vllm_engine import check_context, overlong, vllm_sampling_args
from cgd.runtime import progress

log = logging.getLogger(__name__)
# Stop strings a request sends: vLLM's server refuses more (400, "List should have at most 4 items";
# vllm/envs.py VLLM_MAX_STOP_STRINGS, read when its protocol module is imported, which the kernel server
# has done before any server forks from it), as OpenAI's API does. The rest are cut here from the text:
# stop strings end generation and change nothing before it, so the cut text is the one vLLM would return.
SERVER_STOP_STRINGS = 4


class VLLMServerBackend(Backend):
    """vLLM's OpenAI-compatible server, started for the stage (cgd/generation/vllm_server.py) with the role's
    settings and `data_parallel_size` replicas, stopped by `close()`. Requests keep the in-process
    engine's guarantees: prompts are token ids rendered by `chat_token_ids`, **one prompt per
    request** (one over-long prompt in a list would fail the whole list), each with its own seed; a
    prompt with no room under max_model_len is an error row and `max_tokens` is capped to the room
    left; scored choices read `prompt_logprobs`. Requests in flight: replicas x `max_num_seqs`.
    A server that dies fails the stage with its log's tail (the rerun resumes from finished shards)."""

    name = "vllm_server"

    def __init__(self, model: ModelConfig, gen: GenerationConfig, seed: int, role: str = "student",
                 log_path: str | Path | None = None, server=None):
        """`server`: a stage's server shared with other work (stage 06's lm-eval suites), started
        here if it is not running and left running by close(); None = this backend's own."""
        import openai
        from transformers import AutoTokenizer

        from cgd.generation import vllm_server

        check_context(model, role)
        self.gen, self.model_cfg, self.role = gen, model, role
        self.owns_server = server is None
        self.server = server or vllm_server.for_role(model, role, seed,
                                                     log_path or Path("logs") / f"vllm_server-{role}.log")
        started = self.server.proc is None
        self.server.ensure()
        self.startup_seconds = self.server.startup_seconds if started else 0.0
        self.concurrency = self.server.concurrency
        self.client = openai.OpenAI(base_url=self.server.base_url, api_key="unused", max_retries=model.max_retries,
                                    timeout=model.request_timeout_s)
        self._openai = openai
        self.tokenizer = chat.prepare(AutoTokenizer.from_pretrained(model.model))
        self.stop_ids = stop_token_ids(self.tokenizer, model.stop_tokens, role)
        self.max_model_len = model.max_model_len
        log.info("vLLM server for %s (%d x TP %d%s) healthy in %.1f s", model.model, model.data_parallel_size,
                 model.tensor_parallel_size, ", forked warm" if self.server.warm else "", self.startup_seconds)

    def encode(self, request: Request) -> list[int]:
        return prompt_token_ids(self.tokenizer, request)

    def _send(self, body: dict):
        try:
            return self.client.completions.create(model=self.server.served_name, **body)
        except self._openai.APIError as exc:
            self.server.check_alive()  # a dead server fails the stage, not one row
            return exc

    def _map(self, fn, items: list) -> list:
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            out = list(progress.bar(pool.map(fn, items), total=len(items), desc="requests", unit="req",
                                    disable=len(items) < 2))
        self.server.check_alive()
        return out

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        gen = gen or self.gen
        # Rendered before any request goes out: rendering inside the request threads (one GIL)
        # spread the arrivals, and the engine then prefilled the first few alone.
        encoded = [self.encode(r) for r in requests]

        def one(item: tuple[Request, list[int]]) -> Completion:
            r, ids = item
            room = self.max_model_len - len(ids)
            if room < 1:
                return overlong(self.role, self.max_model_len, len(ids))
            args = vllm_sampling_args(gen, request_seed(seed, r.id), self.model_cfg.skip_special_tokens)
            body = {"prompt": ids, "max_tokens": min(args["max_tokens"], room), "temperature": args["temperature"],
                    "top_p": args["top_p"], "seed": args["seed"],
                    "extra_body": {"skip_special_tokens": args["skip_special_tokens"],
                                   **({"stop_token_ids": list(self.stop_ids)} if self.stop_ids else {})}}
            if r.stop:
                body["stop"] = list(r.stop[:SERVER_STOP_STRINGS])
            resp = self._send(body)
            if isinstance(resp, Exception):
                return Completion("", "error", len(ids), 0, f"{type(resp).__name__}: {resp}"[:500])
            choice = resp.choices[0]
            finish = {"stop": "stop", "length": "length"}.get(choice.finish_reason, "error")
            tokens = resp.usage.completion_tokens if resp.usage else 0
            text, hit = cut_at_stop(choice.text, r.stop)  # the stop strings the server was not sent
            if hit:
                finish = "stop"
            return Completion(text.strip(), finish, len(ids), tokens,
                              None if finish != "error" else f"finish_reason {choice.finish_reason}")

        return self._map(one, list(zip(requests, encoded)))

    def choose(self, requests: list[Request], options: list[str], seed: int,
               gen: GenerationConfig) -> list[Completion]:
        """As VLLMBackend.choose: the option whose tokens get the highest log-likelihood as the
        start of the reply; one greedy token among single-token options, else every option's
        prompt_logprobs."""
        option_ids, first, single = option_tokens(self.tokenizer, options)

        def one(request: Request) -> Completion:
            prompt = self.encode(request)
            if len(prompt) + max(map(len, option_ids)) > self.max_model_len:
                return overlong(self.role, self.max_model_len, len(prompt))
            if single:
                resp = self._send({"prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
                                   "extra_body": {"allowed_token_ids": first, "return_tokens_as_token_ids": True}})
                if isinstance(resp, Exception):
                    return Completion("", "error", len(prompt), 0, f"{type(resp).__name__}: {resp}"[:500])
                token = int(resp.choices[0].logprobs.tokens[0].removeprefix("token_id:"))
                return Completion(options[first.index(token)], "stop", len(prompt), 0)
            scores = []
            for ids in option_ids:
                resp = self._send({"prompt": prompt + ids, "max_tokens": 1, "temperature": 0.0,
                                   "extra_body": {"prompt_logprobs": 0}})
                if isinstance(resp, Exception):
                    return Completion("", "error", len(prompt), 0, f"{type(resp).__name__}: {resp}"[:500])
                logprobs = resp.choices[0].model_extra["prompt_logprobs"]
                scores.append(sum(logprobs[len(prompt) + k][str(t)]["logprob"] for k, t in enumerate(ids)))
            best = max(range(len(options)), key=lambda j: scores[j])
            return Completion(options[best], "stop", len(prompt), 0)

        return self._map(one, requests)

    def close(self) -> None:
        server = getattr(self, "server", None)
        if server is not None and self.owns_server:
            server.stop()
