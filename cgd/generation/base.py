"""The one generation interface: `Request` in, `Completion` out, in order; the backends that
implement it are listed in cgd/generation/__init__.py.

Seeds: a call's `seed` is the stage's seed; each request samples with `request_seed(seed, id)`,
so a row draws the same numbers whatever shard or batch it lands in, and different rows (or
samples of one problem, whose ids differ) draw different ones.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from cgd.config import GenerationConfig

FinishReason = Literal["stop", "length", "error"]
log = logging.getLogger(__name__)




def request_seed(seed: int, request_id: str) -> int:
    """A sampling seed for one request: reproducible, distinct per id, independent of batching."""
    digest = hashlib.blake2b(f"{seed}\x00{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)


def chat_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt's token ids: the chat template with the assistant turn opened. Every local
    backend encodes this way, so the same prompt is the same tokens under transformers and vLLM."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_token_ids(tokenizer, request: "Request") -> list[int]:
    """A request's prompt ids: its raw `prompt` text tokenized as vLLM tokenizes a text prompt
    (the tokenizer's special tokens added: Llama's BOS), or its messages through `chat_token_ids`."""
    if request.prompt is not None:
        return tokenizer(request.prompt)["input_ids"]
    return chat_token_ids(tokenizer, request.messages)


def stop_token_ids(tokenizer, tokens: list[str], role: str) -> list[int]:
    """The ids of `<role>.stop_tokens`; a token the tokenizer does not have as one token is an error."""
    ids = []
    for t in tokens:
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(f"{role}.stop_tokens names {t!r}, which {tokenizer.name_or_path}'s tokenizer has no "
                             "single token for: give its special tokens as written, e.g. <|im_end|>")
        ids.append(i)
    return ids


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first of the stop strings (excluded, as vLLM leaves them out), and whether one was hit."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class Request:
    id: str
    messages: list[dict]
    row: dict = field(default_factory=dict)  # the source row; only the reference oracle reads it
    # A raw text prompt used instead of `messages` (the release's harness prompt types render their
    # own chat markers); local backends only.
    prompt: str | None = None
    stop: tuple[str, ...] = ()  # stop strings, left out of the text (vLLM's `stop`)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Backend(ABC):
    name: str
    startup_seconds: float = 0.0  # loading the model / starting the engine, for the stage report

    @abstractmethod
    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        """Completions for `requests`, in order. `seed` makes sampling reproducible per call;
        `gen` overrides the backend's generation settings for this call (e.g. a short follow-up)."""

    def close(self) -> None:
        """Release the model (vLLM: shut the engine down). The backend is unusable afterwards."""

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




def option_tokens(tokenizer, options: list[str]) -> tuple[list[list[int]], list[int], bool]:
    """Each option's token ids, their first tokens, and whether every option is one distinct token
    (then a greedy token among them picks what the options' log-likelihoods would)."""
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    first = [ids[0] for ids in option_ids]
    return option_ids, first, all(len(ids) == 1 for ids in option_ids) and len(set(first)) == len(first)



@contextmanager
def opened(factory, needed: bool):
    """A stage's backend: made by `factory` only if `needed` (some shard is missing) and closed when
    the stage ends, even on an error. Yields (backend or None, the report fields about it)."""
    backend = factory() if needed else None
    info = {"backend": backend.name if backend else "none (all shards resumed)",
            "backend_startup_seconds": round(backend.startup_seconds, 2) if backend else 0.0,
            "backend_close_seconds": 0.0}
    try:
        yield backend, info
    finally:
        if backend is not None:
            t0 = time.perf_counter()
            backend.close()
            info["backend_close_seconds"] = round(time.perf_counter() - t0, 2)
