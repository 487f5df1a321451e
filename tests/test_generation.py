import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cgd import generation as G
from cgd import params as P


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
    backend = G.TransformersBackend(cfg.student, cfg.rollout)
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
    backend = G.TransformersBackend(cfg.student, cfg.rollout)
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
    critiques = G.ReferenceBackend("critique").generate(reqs, 0)
    assert [c.text.splitlines()[-1] for c in critiques[:3]] == [
        "Conclusion: right", "Conclusion: wrong", "Conclusion: wrong"]
    assert "Conclusion" not in critiques[3].text
    refined = G.ReferenceBackend("refine").generate(reqs[:1], 0)[0].text
    assert refined.endswith("The final answer is $\\boxed{72}$.") and "####" not in refined
    with pytest.raises(ValueError):
        G.ReferenceBackend("rollout")


def test_vllm_request_building_without_vllm(raw_params):
    raw_params["teacher"].update(model="meta-llama/Llama-3.3-70B-Instruct", tensor_parallel_size=8,
                                 max_model_len=8192, dtype="bfloat16")
    raw_params["critique"].update(backend="vllm", temperature=0.6, top_p=0.9, max_new_tokens=2048)
    cfg = P.from_dict(raw_params)
    assert G.vllm_engine_args(cfg.teacher, 7) == {
        "model": "meta-llama/Llama-3.3-70B-Instruct", "tensor_parallel_size": 8,
        "max_model_len": 8192, "dtype": "bfloat16", "seed": 7}
    assert G.vllm_sampling_args(cfg.critique, 7) == {
        "temperature": 0.6, "top_p": 0.9, "max_tokens": 2048, "seed": 7}


# ---------------------------------------------------------------- OpenAI-compatible endpoint

KEY = "sk-test-do-not-leak-123"


class _FaultyChatServer(BaseHTTPRequestHandler):
    """Speaks /v1/chat/completions; the prompt's first word picks a fault to inject."""

    attempts: Counter = Counter()
    auth_seen: set = set()

    def log_message(self, *args):
        pass

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
            code = 429 if kind == "rate" else 500
            payload = json.dumps({"error": {"message": "injected", "type": "server_error"}}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("retry-after-ms", "10")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        payload = json.dumps({
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length" if kind == "long" else "stop",
                         "message": {"role": "assistant", "content": f"echo {prompt}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }).encode()
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


def test_openai_backend_retries_and_records_failures(raw_params, chat_server, monkeypatch):
    monkeypatch.setenv("CGD_TEST_KEY", KEY)
    raw_params["teacher"].update(model="served-teacher", base_url=chat_server, api_key_env="CGD_TEST_KEY",
                                 max_concurrency=4, request_timeout_s=0.5, max_retries=2)
    raw_params["critique"]["backend"] = raw_params["refine"]["backend"] = "openai"
    cfg = P.from_dict(raw_params)
    backend = G.OpenAIBackend(cfg.teacher, cfg.critique, "teacher")
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


def test_openai_backend_names_the_missing_env_var(raw_params, monkeypatch):
    monkeypatch.delenv("CGD_MISSING_KEY", raising=False)
    raw_params["teacher"].update(api_key_env="CGD_MISSING_KEY", base_url="http://127.0.0.1:9/v1")
    cfg = P.from_dict(raw_params)
    with pytest.raises(RuntimeError, match="CGD_MISSING_KEY.*teacher.api_key_env"):
        G.OpenAIBackend(cfg.teacher, cfg.critique, "teacher")


def test_transformers_choose_scores_the_options(raw_params, tiny_model):
    cfg = _cfg(raw_params, tiny_model)
    backend = G.TransformersBackend(cfg.student, cfg.rollout)
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
