"""openai backend: any OpenAI-compatible endpoint (`vllm serve`, a hosted model) through the `openai`
client, which retries 408/409/429/5xx and timeouts with exponential backoff; a thread pool bounds
concurrency. The key comes from the environment variable named in params."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from cgd.config import GenerationConfig, ModelConfig
from cgd.generation.base import Backend, Completion, Request, request_seed


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
        self._fatal: RuntimeError | None = None

    # Finish reasons other than these two mean the text is not a finished answer (a filter hit,
    # an aborted or failed request, or none given): the row is an error with the reason.
    _FINISHED = {"stop": "stop", "length": "length"}
    # A model that rejects a parameter rejects it for every row: stop the stage with one message.
    _REJECTED_PARAMS = {"unsupported_parameter", "unsupported_value"}

    def _one(self, request: Request, seed: int, gen: GenerationConfig) -> Completion:
        if self._fatal is not None:
            return Completion("", "error", error="not sent: the stage is stopping")
        if request.prompt is not None:  # a chat endpoint takes messages, not a rendered prompt
            raise ValueError("a raw text prompt (eval.prompt_type other than ours) needs a local backend "
                             "(transformers, vllm or vllm_server); the openai backend sends chat messages")
        try:
            resp = self.client.chat.completions.create(
                **openai_request(self.model, gen, request.messages, seed))
            choice = resp.choices[0]
            text = (choice.message.content or "").strip()
        except self._openai.BadRequestError as exc:
            if getattr(exc, "code", None) in self._REJECTED_PARAMS:
                self._fatal = RuntimeError(
                    f"{self.model.base_url} rejects '{getattr(exc, 'param', None)}' for model "
                    f"{self.model.model} ({exc.message}). Reasoning models take no max_tokens / "
                    "temperature / top_p: serve an instruct model, or an endpoint that accepts them")
            return Completion("", "error", error=f"BadRequestError 400: {exc.message}"[:300])
        except self._openai.APIError as exc:  # includes timeouts and connection errors
            status = getattr(exc, "status_code", None)
            return Completion("", "error", error=f"{type(exc).__name__}" + (f" {status}" if status else ""))
        except Exception as exc:  # noqa: BLE001 - a malformed reply (no choices, bad JSON) loses one row only
            return Completion("", "error", error=f"malformed reply: {type(exc).__name__}: {exc}"[:300])
        usage = resp.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        finish = self._FINISHED.get(choice.finish_reason)
        if finish is None:
            return Completion(text, "error", *tokens, error=f"finish_reason {choice.finish_reason!r}")
        return Completion(text, finish, *tokens)

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.model.max_concurrency) as pool:
            out = list(pool.map(lambda r: self._one(r, request_seed(seed, r.id), gen or self.gen),
                                requests))
        if self._fatal is not None:
            raise self._fatal
        return out
