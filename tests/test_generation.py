import json
import os
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cgd import config as P
from cgd import generation as G
from cgd.generation import factory, hf, openai_api, reference, vllm_engine
from cgd.runtime import device


def _cfg(raw_params, tiny_model, **gen):
    raw_params["student"]["model"] = raw_params["teacher"]["model"] = str(tiny_model)
    raw_params["rollout"].update(gen)
    return P.from_dict(raw_params)


def _requests(n):
    questions = ["What is 2 + 2?", "Natalia sold 48 clips in April and half as many in May. How many in all?",
                 "Find 12 * 7.", "Is 17 prime?", "Compute 100 / 4 and explain."]
    return [G.Request(f"r{i}", [{"role": "user", "content": questions[i % 5]}]) for i in range(n)]


def test_transformers_backend_batches_and_keeps_order(raw_params, tiny_model):
    cfg = _cfg(raw_params, tiny_model, max_new_tokens=6, temperature=0.0, batch_size=2)
    backend = hf.TransformersBackend(cfg.student, cfg.rollout)
    reqs = _requests(5)
    out = backend.generate(reqs, seed=0)
    assert len(out) == 5
    assert [c.prompt_tokens for c in out] == [len(backend.encode(r)) for r in reqs]
    assert all(c.completion_tokens <= 6 and c.finish_reason in ("stop", "length") for c in out)
    # Greedy decoding is the same whether a prompt is batched with others or alone.
    alone = [backend.generate([r], seed=0)[0].text for r in reqs]
    assert [c.text for c in out] == alone


def test_transformers_sampling_is_seeded(raw_params, tiny_model):
    cfg = _cfg(raw_params, tiny_model, max_new_tokens=12, temperature=1.0, top_p=1.0, batch_size=4)
    backend = hf.TransformersBackend(cfg.student, cfg.rollout)
    reqs = _requests(4)
    first = [c.text for c in backend.generate(reqs, seed=3)]
    assert first == [c.text for c in backend.generate(reqs, seed=3)]
    assert first != [c.text for c in backend.generate(reqs, seed=4)]


def test_reference_backend_critiques_against_gold_and_refines_with_reference():
    rows = [
        {"reference_answer": "72", "student_answer": "48 + 24 = 72, so \\boxed{72}",
         "reference_solution": "48/2 = 24\n48 + 24 = 72\n#### 72"},
        {"reference_answer": "72", "student_answer": "48 + 12 = 60. The answer is 60",
         "reference_solution": "48/2 = 24\n48 + 24 = 72\n#### 72"},
        {"reference_answer": "72", "student_answer": "I do not know",
         "reference_solution": "x"},
        {"reference_answer": None, "student_answer": "\\boxed{1}", "reference_solution": "x"},
    ]
    reqs = [G.Request(str(i), [], r) for i, r in enumerate(rows)]
    critiques = reference.ReferenceBackend("critique").generate(reqs, 0)
    assert [c.text.splitlines()[-1] for c in critiques[:3]] == [
        "Conclusion: right", "Conclusion: wrong", "Conclusion: wrong"]
    assert "Conclusion" not in critiques[3].text
    refined = reference.ReferenceBackend("refine").generate(reqs[:1], 0)[0].text
    assert refined.endswith("The final answer is $\\boxed{72}$.") and "####" not in refined
    with pytest.raises(ValueError):
        reference.ReferenceBackend("rollout")


def test_vllm_request_building_without_vllm(raw_params, monkeypatch):
    raw_params["teacher"].update(model="meta-llama/Llama-3.3-70B-Instruct", tensor_parallel_size=8,
                                 max_model_len=8192, dtype="bfloat16", enforce_eager=False,
                                 kv_cache_gib=None)
    raw_params["critique"].update(backend="vllm", temperature=0.6, top_p=0.9, max_new_tokens=2048)
    cfg = P.from_dict(raw_params)
    assert vllm_engine.vllm_engine_args(cfg.teacher, 7) == {
        "model": "meta-llama/Llama-3.3-70B-Instruct", "tensor_parallel_size": 8,
        "max_model_len": 8192, "dtype": "bfloat16", "seed": 7, "enforce_eager": False,
        "gpu_memory_utilization": 0.9}
    assert vllm_engine.vllm_sampling_args(cfg.critique, 7) == {
        "temperature": 0.6, "top_p": 0.9, "max_tokens": 2048, "seed": 7, "skip_special_tokens": True}
    # The CPU demo: an explicit KV cache in bytes, and the engine in this process. Its dtype `auto`
    # is resolved here, not left to vLLM (which would read the checkpoint's bf16 on any CPU).
    demo = P.from_dict(yaml_params())
    monkeypatch.setattr(device, "bf16_supported", lambda: False)
    assert vllm_engine.vllm_engine_args(demo.student, 1, on_cpu=True) == {
        "model": "models/smollm2-135m-instruct", "tensor_parallel_size": 1, "max_model_len": 4096,
        "dtype": "float32", "seed": 1, "enforce_eager": True, "gpu_memory_utilization": 0.9,
        "kv_cache_memory_bytes": 2 * 2**30, "enable_chunked_prefill": False,
        "distributed_executor_backend": "uni"}
    monkeypatch.setattr(device, "bf16_supported", lambda: True)
    assert vllm_engine.vllm_engine_args(demo.student, 1, on_cpu=True)["dtype"] == "bfloat16"


def yaml_params():
    import yaml

    from tests.conftest import REPO

    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_request_seeds_are_distinct_reproducible_and_bounded():
    ids = [f"gsm8k-{i}#s{j}" for i in range(200) for j in range(4)]
    seeds = [G.request_seed(1234, i) for i in ids]
    assert len(set(seeds)) == len(ids)
    assert seeds == [G.request_seed(1234, i) for i in ids]
    assert seeds != [G.request_seed(1235, i) for i in ids]
    assert all(0 <= s < 2**31 - 1 for s in seeds)


# ---------------------------------------------------------------- vLLM backend on a fake engine


class _FakeLLM:
    """The surface of `vllm.LLM` the backend uses, with vLLM 0.32's shapes: RequestOutput with
    prompt_token_ids, outputs[0].text/token_ids/finish_reason, prompt_logprobs as a list (None
    first) of {token_id: Logprob}; it raises as vLLM does for a prompt over max_model_len."""

    instances: list = []

    def __init__(self, **kwargs):
        from types import SimpleNamespace

        from transformers import AutoTokenizer

        self.kwargs, self.calls, self.closed, self.resets = kwargs, [], False, []
        self._tok = AutoTokenizer.from_pretrained(kwargs["model"])
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=self._shutdown))
        _FakeLLM.instances.append(self)

    def reset_prefix_cache(self) -> bool:
        self.resets.append(len(self.calls))  # how many engine calls had run before it
        return True

    def _shutdown(self):
        self.closed = True

    def get_tokenizer(self):
        return self._tok

    def generate(self, prompts, params, use_tqdm=True):
        import random
        from types import SimpleNamespace

        self.calls.append([(p["prompt_token_ids"], sp) for p, sp in zip(prompts, params)])
        outs = []
        for p, sp in zip(prompts, params):
            ids = p["prompt_token_ids"]
            if len(ids) > self.kwargs["max_model_len"]:
                raise ValueError(f"This model's maximum context length is {self.kwargs['max_model_len']} "
                                 f"tokens. However, your prompt contains at least {len(ids)} input tokens")
            if self._tok.decode(ids).count("poison"):
                raise RuntimeError("injected failure")
            if sp.prompt_logprobs is not None:
                logprobs = [None] + [{t: SimpleNamespace(logprob=-(t % 7) - 0.5)} for t in ids[1:]]
                outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=logprobs,
                                            outputs=[SimpleNamespace(text="", token_ids=[1], finish_reason="length")]))
                continue
            if getattr(sp, "allowed_token_ids", None):  # greedy among them, by the same fake scores
                best = max(sp.allowed_token_ids, key=lambda t: -(t % 7) - 0.5)
                outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=None,
                                            outputs=[SimpleNamespace(text="", token_ids=[best], finish_reason="length")]))
                continue
            if "s1think" in self._tok.decode(ids):  # s1.1's reasoning format, then its stop token
                out_ids = self._tok("<|im_start|>think\nAdd them.<|im_start|>answer\nAnswer: 7<|im_end|>",
                                    add_special_tokens=False)["input_ids"]
                # vLLM detokenizes all but the stop token, with the request's skip_special_tokens
                text = self._tok.decode(out_ids[:-1], skip_special_tokens=sp.skip_special_tokens)
                outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=None, outputs=[SimpleNamespace(
                    text=text, token_ids=out_ids, finish_reason="stop")]))
                continue
            n = min(sp.max_tokens, 5)
            text = f"draw {random.Random(sp.seed).random():.6f}" if sp.temperature > 0 else "greedy"
            outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=None, outputs=[SimpleNamespace(
                text=f" {text} ", token_ids=list(range(n)), finish_reason="length" if n == sp.max_tokens else "stop")]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    from types import ModuleType, SimpleNamespace

    vllm = ModuleType("vllm")
    vllm.LLM = _FakeLLM
    vllm.SamplingParams = lambda **kw: SimpleNamespace(**{"prompt_logprobs": None, "seed": None,
                                                          "temperature": 1.0, **kw})
    inputs = ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    vllm.inputs = inputs
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setattr(factory, "vllm_available", lambda: True)
    _FakeLLM.instances = []
    return _FakeLLM


def test_vllm_backend_seeds_each_request_and_isolates_bad_rows(raw_params, tiny_model, fake_vllm):
    import torch

    raw_params["student"].update(model=str(tiny_model), max_model_len=256)
    raw_params["rollout"].update(backend="vllm", temperature=0.7, max_new_tokens=64)
    cfg = P.from_dict(raw_params)
    threads = torch.get_num_threads()
    backend = G.make_backend("rollout", "student", cfg.rollout, cfg.student, cfg.seed)
    assert isinstance(backend, vllm_engine.VLLMBackend) and backend.name == "vllm"
    llm = fake_vllm.instances[0]
    assert llm.kwargs["distributed_executor_backend"] == "uni" and llm.kwargs["kv_cache_memory_bytes"] == 2**31

    reqs = _requests(5) + [G.Request("long", [{"role": "user", "content": "add " * 400}]),
                           G.Request("bad", [{"role": "user", "content": "poison pill"}])]
    out = backend.generate(reqs, seed=cfg.seed)
    assert len(out) == 7
    by_id = dict(zip([r.id for r in reqs], out))
    assert by_id["long"].finish_reason == "error" and "student.max_model_len is 256" in by_id["long"].error
    assert by_id["bad"].finish_reason == "error" and "injected failure" in by_id["bad"].error
    assert all(c.finish_reason == "stop" and c.text.startswith("draw") for c in out[:5])
    # The over-long prompt never reached the engine; the poisoned batch was retried one by one.
    first_batch = llm.calls[0]
    assert len(first_batch) == 6 and all(len(ids) <= 256 for ids, _ in first_batch)
    assert [len(c) for c in llm.calls[1:]] == [1] * 6
    # Each request's seed comes from (stage seed, id): not the batch, not its position.
    seeds = [sp.seed for _, sp in first_batch[:5]]
    assert seeds == [G.request_seed(cfg.seed, r.id) for r in reqs[:5]] and len(set(seeds)) == 5
    alone = [backend.generate([r], seed=cfg.seed)[0].text for r in reversed(reqs[:5])]
    assert alone[::-1] == [c.text for c in out[:5]]
    # Every generate() starts from an empty prefix cache (before its first engine call).
    assert llm.resets == [0, 7, 8, 9, 10, 11]
    # max_tokens is capped to the room the prompt leaves under max_model_len.
    assert all(sp.max_tokens == min(64, 256 - len(ids)) for ids, sp in first_batch)

    backend.close()
    assert llm.closed and torch.get_num_threads() == threads
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in __import__("os").environ


@pytest.mark.parametrize("skip", [True, False])
def test_s1_think_markers_survive_generation_and_the_record_builder(raw_params, tiny_model, fake_vllm, skip):
    """s1.1 answers "<|im_start|>think ... <|im_start|>answer ...": with the teacher's
    skip_special_tokens false the markers reach the refined answer and the CGD training target as
    the special tokens they were; with the default they are stripped (words left dangling)."""
    from cgd.training import records

    raw_params["teacher"].update(model=str(tiny_model), skip_special_tokens=skip)
    raw_params["refine"]["backend"] = "vllm"
    cfg = P.from_dict(raw_params)
    backend = G.make_backend("refine", "teacher", cfg.refine, cfg.teacher, cfg.seed)
    out = backend.generate([G.Request("r", [{"role": "user", "content": "s1think: what is 3 + 4?"}])], 0)[0]
    backend.close()
    assert out.finish_reason == "stop" and "<|im_end|>" not in out.text
    if skip:
        assert out.text.startswith("think\nAdd them.answer") and "<|im_start|>" not in out.text
        return
    assert out.text == "<|im_start|>think\nAdd them.<|im_start|>answer\nAnswer: 7"
    row = {"id": "r", "question": "What is 3 + 4?", "student_answer": "8", "critique": "Wrong.\n\nConclusion: wrong",
           "refined_answer": out.text, "status": "ok", "in_mixture": True}
    record = records.cgd(row, records.templates())
    assert record["completion"][0]["content"] == out.text
    prompt_ids, full_ids = records.token_ids(record, backend.tokenizer)
    marker = backend.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert full_ids[len(prompt_ids):].count(marker) == 2  # each marker is its special token again


@pytest.mark.parametrize("options", [["A", "B"], ["right", "wrong"]])
def test_vllm_choose_scores_options_by_their_log_likelihood(raw_params, tiny_model, fake_vllm, options):
    """Single-token options: one greedy token among them per request; longer ones: each option's
    prompt_logprobs. Either way the pick is the option the model scores highest, all requests go
    to the engine in one call, and an over-long prompt is an error row without reaching it."""
    raw_params["teacher"].update(model=str(tiny_model))
    raw_params["critique"]["backend"] = "vllm"
    cfg = P.from_dict(raw_params)
    backend = G.make_backend("critique", "teacher", cfg.critique, cfg.teacher, cfg.seed)
    ids = [backend.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    single = all(len(i) == 1 for i in ids)
    assert single == (options[0] == "A")  # the tiny tokenizer: A and B are one token each, right and wrong are not
    long = G.Request("long", [{"role": "user", "content": "word " * 5000}])
    picks = backend.choose(_requests(3) + [long], options, 0, cfg.critique)
    # The fake scores token t at -(t % 7) - 0.5: the pick is the option whose tokens sum highest.
    expected = options[max(range(2), key=lambda j: sum(-(t % 7) - 0.5 for t in ids[j]))]
    assert [c.text for c in picks[:3]] == [expected] * 3
    assert picks[3].finish_reason == "error" and "max_model_len" in picks[3].error
    engine = fake_vllm.instances[-1]
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3 * (1 if single else 2)
    assert all((sp.prompt_logprobs is None) == single for _, sp in engine.calls[0])
    backend.close()


def test_vllm_backend_names_the_keys_cpu_needs(raw_params, tiny_model, fake_vllm):
    raw_params["teacher"].update(model=str(tiny_model), kv_cache_gib=None)
    raw_params["critique"]["backend"] = "vllm"
    cfg = P.from_dict(raw_params)
    with pytest.raises(P.ParamsError, match="'teacher.kv_cache_gib' is null"):
        G.make_backend("critique", "teacher", cfg.critique, cfg.teacher, cfg.seed)
    raw_params["teacher"].update(kv_cache_gib=1, cpu_threads=4096)
    cfg = P.from_dict(raw_params)
    with pytest.raises(P.ParamsError, match="'teacher.cpu_threads' is 4096"):
        G.make_backend("critique", "teacher", cfg.critique, cfg.teacher, cfg.seed)
    positions = json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"]
    raw_params["teacher"].update(cpu_threads=None, max_model_len=positions + 1)
    cfg = P.from_dict(raw_params)
    with pytest.raises(P.ParamsError, match=f"'teacher.max_model_len' is {positions + 1}.*set it to {positions}"):
        G.make_backend("critique", "teacher", cfg.critique, cfg.teacher, cfg.seed)
    assert fake_vllm.instances == []


def test_vllm_falls_back_to_transformers_where_not_installed(raw_params, tiny_model, monkeypatch):
    monkeypatch.setattr(factory, "vllm_available", lambda: False)
    raw_params["student"]["model"] = str(tiny_model)
    cfg = P.from_dict(raw_params)
    assert cfg.rollout.backend == "vllm" and G.resolved_backend("vllm") == "transformers"
    backend = G.make_backend("rollout", "student", cfg.rollout, cfg.student, cfg.seed)
    assert isinstance(backend, hf.TransformersBackend) and backend.name == "transformers (vllm not installed)"


# ---------------------------------------------------------------- OpenAI-compatible endpoint

KEY = "sk-test-do-not-leak-123"


class _FaultyChatServer(BaseHTTPRequestHandler):
    """Speaks /v1/chat/completions; the prompt's first word picks a fault to inject."""

    attempts: Counter = Counter()
    auth_seen: set = set()

    def log_message(self, *args):
        pass

    def _reply(self, code, body, headers=None):
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.auth_seen.add(self.headers.get("Authorization"))
        prompt = body["messages"][-1]["content"]
        kind = prompt.split()[0]
        self.attempts[prompt] += 1
        n = self.attempts[prompt]
        if kind == "hang":
            threading.Event().wait(2.0)  # longer than the client timeout, every attempt
            return  # the client has given up; answering would only hit a closed socket
        if (kind == "rate" and n == 1) or (kind == "flaky" and n <= 2) or kind == "down":
            self._reply(429 if kind == "rate" else 500,
                        {"error": {"message": "injected", "type": "server_error"}}, {"retry-after-ms": "10"})
            return
        if kind == "reasoning":  # what OpenAI's o-series answer to max_tokens
            self._reply(400, {"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
            return
        finish = {"long": "length", "filtered": "content_filter", "aborted": "abort", "failed": "error",
                  "unfinished": None}.get(kind, "stop")
        choices = [] if kind == "empty" else [{"index": 0, "finish_reason": finish, "message": {
            "role": "assistant", "content": None if kind == "filtered" else f"echo {prompt}"}}]
        payload = json.dumps({
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }).encode()
        if kind == "garbled":
            payload = payload[:40]  # a proxy cut the body short: not JSON
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def chat_server():
    _FaultyChatServer.attempts = Counter()
    _FaultyChatServer.auth_seen = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FaultyChatServer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _served_teacher(raw_params, url, monkeypatch, request_timeout_s=2, max_retries=0):
    monkeypatch.setenv("CGD_TEST_KEY", KEY)
    raw_params["teacher"].update(model="served-teacher", base_url=url, api_key_env="CGD_TEST_KEY",
                                 max_concurrency=4, request_timeout_s=request_timeout_s, max_retries=max_retries)
    raw_params["critique"]["backend"] = raw_params["refine"]["backend"] = "openai"
    cfg = P.from_dict(raw_params)
    return openai_api.OpenAIBackend(cfg.teacher, cfg.critique, "teacher")


def test_openai_backend_retries_and_records_failures(raw_params, chat_server, monkeypatch):
    backend = _served_teacher(raw_params, chat_server, monkeypatch, request_timeout_s=0.5, max_retries=2)
    kinds = ["ok a", "rate b", "flaky c", "hang d", "down e", "long f", "ok g", "ok h"]
    out = backend.generate([G.Request(str(i), [{"role": "user", "content": k}]) for i, k in enumerate(kinds)], 0)

    assert len(out) == len(kinds)  # no row lost, order kept
    by_kind = dict(zip(kinds, out))
    for k in ("ok a", "rate b", "flaky c", "ok g", "ok h"):
        assert by_kind[k].finish_reason == "stop" and by_kind[k].text == f"echo {k}"
    assert by_kind["long f"].finish_reason == "length"
    assert by_kind["hang d"].finish_reason == "error" and "Timeout" in by_kind["hang d"].error
    assert by_kind["down e"].finish_reason == "error" and "500" in by_kind["down e"].error
    attempts = _FaultyChatServer.attempts
    assert attempts["rate b"] == 2 and attempts["flaky c"] == 3 and attempts["down e"] == 3
    assert _FaultyChatServer.auth_seen == {f"Bearer {KEY}"}
    assert KEY not in json.dumps([c.__dict__ for c in out])


def test_openai_backend_keeps_every_row_of_a_malformed_or_unfinished_reply(raw_params, chat_server,
                                                                           monkeypatch):
    backend = _served_teacher(raw_params, chat_server, monkeypatch)
    kinds = ["ok a", "filtered b", "aborted c", "failed d", "unfinished e", "empty f", "garbled g", "ok h"]
    out = backend.generate([G.Request(str(i), [{"role": "user", "content": k}]) for i, k in enumerate(kinds)], 0)
    by_kind = dict(zip(kinds, out))
    assert [c.finish_reason for c in out] == ["stop"] + ["error"] * 6 + ["stop"]
    assert by_kind["filtered b"].error == "finish_reason 'content_filter'" and by_kind["filtered b"].text == ""
    assert by_kind["aborted c"].error == "finish_reason 'abort'"
    assert by_kind["failed d"].error == "finish_reason 'error'"
    assert by_kind["unfinished e"].error == "finish_reason None"
    assert by_kind["empty f"].error.startswith("malformed reply: IndexError")
    assert by_kind["garbled g"].error.startswith("malformed reply")
    assert by_kind["ok h"].text == "echo ok h"


def test_openai_backend_stops_the_stage_when_the_model_rejects_a_parameter(raw_params, chat_server,
                                                                            monkeypatch):
    backend = _served_teacher(raw_params, chat_server, monkeypatch)
    requests = [G.Request(str(i), [{"role": "user", "content": f"reasoning {i}"}]) for i in range(40)]
    with pytest.raises(RuntimeError, match="rejects 'max_tokens' for model served-teacher"):
        backend.generate(requests, 0)
    # the requests still queued when the first rejection came back were never sent
    assert sum(_FaultyChatServer.attempts.values()) < len(requests)


def test_openai_backend_names_the_missing_env_var(raw_params, monkeypatch):
    monkeypatch.delenv("CGD_MISSING_KEY", raising=False)
    raw_params["teacher"].update(api_key_env="CGD_MISSING_KEY", base_url="http://127.0.0.1:9/v1")
    cfg = P.from_dict(raw_params)
    with pytest.raises(RuntimeError, match="CGD_MISSING_KEY.*teacher.api_key_env"):
        openai_api.OpenAIBackend(cfg.teacher, cfg.critique, "teacher")


def test_transformers_choose_scores_the_options(raw_params, tiny_model):
    cfg = _cfg(raw_params, tiny_model)
    backend = hf.TransformersBackend(cfg.student, cfg.rollout)
    reqs = _requests(3)
    picks = backend.choose(reqs, ["right", "wrong"], 0, cfg.critique)
    assert all(c.text in ("right", "wrong") for c in picks)
    # The pick is the option with the higher log-likelihood, computed independently here.
    import torch
    for r, c in zip(reqs, picks):
        prompt = backend.encode(r)
        def score(option):
            ids = backend.tokenizer(option, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(backend.model(torch.tensor([prompt + ids])).logits.float()[0], -1)
            return sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(ids))
        assert c.text == max(["right", "wrong"], key=score)


def test_stage_06_shuts_its_engine_down_before_lm_eval_starts_one(raw_params, tiny_model, fake_vllm,
                                                                   eval_hub_mirror, tmp_path, monkeypatch):
    """Notebook 06's order: the benchmarks' vLLM engine, then lm-eval's own (general.model: vllm).
    On a GPU each reserves gpu_memory_utilization of it, so the first must be gone first."""
    from dataclasses import replace

    import lm_eval

    from cgd.evaluation import evaluate as evaluation
    from cgd.evaluation import general

    raw_params["student"].update(model=str(tiny_model), gpu_memory_utilization=0.42)
    raw_params["eval"].update(hub_mirror=str(eval_hub_mirror), benchmarks={"gsm8k": 2},
                              general={**raw_params["eval"]["general"], "model": "vllm",
                                       "tasks": {"cgd_local_mc": "acc,none"}})
    raw_params["eval"]["generation"].update(backend="vllm", max_new_tokens=8)
    raw_params["data"]["decontamination"]["benchmarks"] = ["gsm8k"]
    cfg = P.from_dict(raw_params)
    problems, _ = evaluation.load_problems(cfg.eval, cfg.seed)
    items = evaluation.plan(problems, cfg.eval)
    model_cfg = replace(cfg.student, model=str(tiny_model))
    evaluation.generate(items, problems, lambda: G.make_backend("eval", "student", cfg.eval.generation,
                                                                model_cfg, cfg.seed),
                        cfg.eval, tmp_path / "out", cfg.seed, "fp")
    assert len(fake_vllm.instances) == 1

    def simple_evaluate(model, model_args, **kwargs):  # lm-eval's vllm model builds vllm.LLM
        assert all(llm.closed for llm in fake_vllm.instances), "the benchmarks' engine is still up"
        fake_vllm(model=model_args["pretrained"], gpu_memory_utilization=model_args["gpu_memory_utilization"])
        return {"results": {"cgd_local_mc": {"acc,none": 0.5, "acc_stderr,none": 0.1}},
                "n-samples": {"cgd_local_mc": {"effective": 6}}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    # lm-eval's vllm module is faked away with the engine: importing it against the fake `vllm`
    # (the CPU-build shim does) would fail and leave a broken module for later tests.
    monkeypatch.setattr(general, "_lm_eval_vllm_on_cpu_build", lambda: None)
    out = general.run(str(tiny_model), cfg.eval.general, model_cfg, cfg.seed)
    assert out["cgd_local_mc"]["value"] == 50.0
    assert [llm.kwargs["gpu_memory_utilization"] for llm in fake_vllm.instances] == [0.42, 0.42]


def test_vllm_logging_keeps_real_warnings_and_drops_the_expected_ones(capsys, monkeypatch):
    """A notebook cell shows vLLM's warnings but not its INFO config dump nor the warnings this
    pipeline causes on purpose: the configuration Quiet hands vLLM (cgd/generation/vllm_logs.py)."""
    import logging
    import logging.config

    from cgd.generation import vllm_logs

    monkeypatch.delenv("CGD_VLLM_VERBOSE", raising=False)
    monkeypatch.delenv(vllm_logs.ENV, raising=False)
    with vllm_logs.Quiet():  # what the engine reads when it starts
        config = json.loads(Path(os.environ[vllm_logs.ENV]).read_text())
    assert vllm_logs.ENV not in os.environ  # put back when the engine closes
    logger = logging.getLogger("vllm")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    try:
        logging.config.dictConfig(config)
        child = logging.getLogger("vllm.v1.worker.cpu_worker")
        child.info("Initializing a V1 LLM engine (v0.32.0) with config: ...")
        child.warning("libtcmalloc is not found in LD_PRELOAD. For best performance ...")
        child.warning("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.")
        child.warning("KV cache is too small for the requested max_model_len")
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]
    out = capsys.readouterr().out
    assert "KV cache is too small" in out
    assert "Initializing a V1 LLM engine" not in out and "LD_PRELOAD" not in out and "set_num_threads" not in out


def test_stop_tokens_end_a_generation_and_an_unknown_one_names_the_key(tiny_model):
    """<role>.stop_tokens: a base model in its chat template ends turns with a token its EOS is not
    (Qwen2.5-Math base: <|im_end|> vs <|endoftext|>); transformers stops at it too."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from cgd.generation.base import stop_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_model)
    special = tok.all_special_tokens[0]
    assert stop_token_ids(tok, [special], "student") == [tok.convert_tokens_to_ids(special)]
    with pytest.raises(ValueError, match="student.stop_tokens names '<\\|no-such-token\\|>'"):
        stop_token_ids(tok, ["<|no-such-token|>"], "student")
    cfg = P.load("params.yaml", {"student.model": str(tiny_model)})
    backend = hf.TransformersBackend(replace(cfg.student, stop_tokens=[special]), cfg.rollout)
    assert tok.convert_tokens_to_ids(special) in backend.eos_ids
