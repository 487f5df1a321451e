"""The `cgd` Jupyter kernel, with warm starts: a kernel forked from a process that has already
imported torch, transformers, vLLM, TRL and lm-eval.

Every papermill run starts a fresh kernel, and every notebook of this pipeline first imports the
same heavy libraries: ~10-20 s per notebook on a 2-core machine, paid by each of the ~100
notebooks a paper profile's pipeline runs (trainings, evaluations, ablation points). A kernel
server pays it once:

    python -m cgd.runtime.kernel serve --socket S &   # imports, then waits
    CGD_KERNEL_SOCKET=S dvc repro             # each `cgd` kernel is a fork of it

The `cgd` kernelspec runs `python -m cgd.runtime.kernel launch -f {connection_file}`. Without
CGD_KERNEL_SOCKET (JupyterLab, a plain `dvc repro`) the launcher becomes the kernel itself, as
`python -m ipykernel_launcher` would (with one warning filtered, `_QuietLoopbackTCP`).
With it, the launcher hands its connection file, working directory, environment and standard
streams to the server, which forks a child that becomes the kernel; the launcher stays as the
process jupyter_client watches, forwards interrupts to the child and exits with its status. If the
launcher is killed, the server kills the child.

Only third-party modules are preloaded, never `cgd` itself: a kernel imports the project from its
working directory (a rehearsal's scratch copy has its own). The server is started with the same
environment as the run (HF_HUB_OFFLINE and friends are read at import). Nothing starts threads
before the fork; each child starts its own.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ENV = "CGD_KERNEL_SOCKET"
# vLLM's CPU worker and model runner are imported by every engine start (1.5 s of its 6 s here);
# the server modules by every vllm_server start;
# lm_eval.models.vllm_causallms is not preloaded: it must be imported under cgd.evaluation.general's CPU-build shim.
PRELOAD = ("torch", "transformers", "trl", "datasets", "vllm", "lm_eval", "lm_eval.evaluator", "pandas",
           "matplotlib.pyplot", "seaborn", "math_verify", "dvclive", "ipykernel.kernelapp", "scipy.stats",
           "vllm.v1.worker.cpu_worker", "vllm.v1.worker.cpu_model_runner",
           # backend vllm_server (cgd/generation/vllm_server.py): the server forked from here skips its imports
           "vllm.entrypoints.cli.main", "vllm.entrypoints.cli.serve", "vllm.entrypoints.launchers.api_server.entry",
           "vllm.v1.engine.core", "vllm.v1.executor.multiproc_executor")


def _preload(modules) -> list[str]:
    import importlib

    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - an optional library absent from this venv
            pass
    if "vllm" in loaded:  # the names `from vllm import LLM` resolves lazily
        import vllm

        for attr in ("LLM", "SamplingParams"):
            getattr(vllm, attr, None)
    return loaded


def _send(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    msg = struct.pack("!I", len(data)) + data
    if fds:
        sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(msg)


def _recv(sock: socket.socket, with_fds: int = 0) -> tuple[dict | None, list[int]]:
    fds = array.array("i")
    msg, anc, _, _ = sock.recvmsg(1 << 20, socket.CMSG_LEN(with_fds * fds.itemsize) if with_fds else 0)
    if not msg:
        return None, []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    (size,) = struct.unpack("!I", msg[:4])
    body = msg[4:]
    while len(body) < size:
        body += sock.recv(size - len(body))
    return json.loads(body), list(fds)


# ---------------------------------------------------------------- server


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the launcher's kernel, or run the module a `fork_module` request
    names (never returns)."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]  # as `python -m ipykernel_launcher` run there
        for name in [m for m in sys.modules if m == "cgd" or m.startswith("cgd.")]:
            del sys.modules[name]  # the server's own import of this module: the kernel's project is its cwd's
        if "module" in request:  # `python -m MODULE ARGV...`, as run from its cwd
            import runpy

            sys.argv = [request["module"], *request["argv"]]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
            return
        # ipykernel read JPY_PARENT_PID when the server imported it (unset then): 1 = no parent
        # poller (this process's parent is the server; the watcher ends it if the launcher dies).
        sys.argv = ["ipykernel_launcher", *request["argv"], "--IPKernelApp.parent_handle=1"]
        _run_ipykernel()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(path: str, modules=PRELOAD) -> None:
    start = time.perf_counter()
    loaded = _preload(modules)
    # The preloaded libraries are millions of objects that every full collection in a kernel would
    # scan again: a vLLM engine start collects five times, 2.4 s of its 6 s here. Frozen before the
    # forks, they are left out of the children's collections (and their pages stay shared), as
    # Python's gc.freeze documentation advises for a pre-forking server.
    import gc

    gc.collect()
    gc.freeze()
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print(f"cgd kernel server: {len(loaded)} modules preloaded in {time.perf_counter() - start:.1f} s; "
          f"listening on {path}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels and watchers are reaped by the kernel (OS)
    while True:
        conn, _ = server.accept()
        request, fds = _recv(conn, with_fds=3)
        if request is None:
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            server.close()
            conn.close()
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        # A watcher per kernel: report its exit to the launcher; kill it if the launcher goes.
        watcher = os.fork()
        if watcher == 0:
            server.close()
            _watch(conn, pid)
        conn.close()


def _watch(conn: socket.socket, pid: int) -> None:
    """In a small forked process: relay signals the launcher asks for, and the kernel's exit."""
    import select

    _send(conn, {"pid": pid})
    code = None
    while code is None:
        ready, _, _ = select.select([conn], [], [], 0.2)
        if ready:
            msg, _ = _recv(conn)
            if msg is None:  # the launcher died: take its kernel with it
                _kill(pid)
                break
            if "signal" in msg:
                _kill(pid, msg["signal"])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            code = 0
        # The kernel is the server's child, not ours: poll /proc for its exit status.
        status = _proc_state(pid)
        if status == "Z" or status is None:
            code = 0
    try:
        _send(conn, {"exit": 0})
    except OSError:
        pass
    os._exit(0)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig) if sig == signal.SIGKILL else os.kill(pid, sig)
    except OSError:
        pass


def fork_module(path: str, module: str, argv: list[str], env: dict, fds: list[int],
                cwd: str | None = None) -> tuple[int | None, socket.socket | None]:
    """Ask the kernel server at `path` to fork `python -m module argv...` (its own session; standard
    streams `fds`, which are closed here). Returns (pid, connection), or (None, None) when no
    server answers. Keep the connection open while the process should live: if it closes (this
    process dies), the server's watcher kills the process's group."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        _send(sock, {"module": module, "argv": argv, "cwd": cwd or os.getcwd(), "env": env}, fds)
        msg, _ = _recv(sock)
    except OSError:
        msg = None
    finally:
        for fd in set(fds):
            os.close(fd)
    if msg is None:
        sock.close()
        return None, None
    return msg["pid"], sock


# ---------------------------------------------------------------- launcher (the kernelspec's argv)


class _QuietLoopbackTCP:
    """Drops ipykernel's "Kernel is running over TCP without encryption" warning for a kernel bound
    to the loopback interface (papermill's and DVC's), printed once per notebook into the run's
    terminal and telling its user nothing; every other kernel warning passes."""

    def __init__(self, loopback: bool):
        self.loopback = loopback

    def filter(self, record) -> bool:
        return not (self.loopback and "running over TCP without encryption" in record.getMessage())


def _run_ipykernel() -> None:
    """`python -m ipykernel_launcher` with sys.argv as set, in this process."""
    import logging

    loopback = False
    if "-f" in sys.argv[:-1]:
        try:
            with open(sys.argv[sys.argv.index("-f") + 1]) as f:
                loopback = json.load(f).get("ip") in ("127.0.0.1", "localhost", "::1")
        except (OSError, ValueError):
            pass
    logging.getLogger("IPKernelApp").addFilter(_QuietLoopbackTCP(loopback))
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


class warm_server:
    """A kernel server for a run of `dvc repro` (`make repro`, the rehearsal): every notebook's kernel
    is forked from one process that imported the heavy libraries once, instead of importing them
    again (~15 s each on 2 cores; ~20 notebooks in the demo, ~100 in a paper profile's pipeline).
    `with warm_server(cwd, env) as env:` gives the run's environment; the kernelspec falls back to a
    plain kernel if the server is not there."""

    def __init__(self, cwd: Path, env: dict):
        import tempfile

        self.cwd, self.env = cwd, dict(env)
        self.socket = Path(tempfile.mkdtemp(prefix="cgd-kernel-")) / "server.sock"  # AF_UNIX paths are short

    def __enter__(self) -> dict:
        install_spec()  # the cgd kernelspec runs cgd.runtime.kernel's launcher (idempotent)
        start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "cgd.runtime.kernel", "serve", "--socket", str(self.socket)],
                                     cwd=self.cwd, env=self.env, start_new_session=True)
        while not self.socket.exists():
            if self.proc.poll() is not None or time.perf_counter() - start > 300:
                print("kernel server did not start: notebooks start plain kernels", flush=True)
                return self.env
            time.sleep(0.5)
        print(f"kernel server up in {time.perf_counter() - start:.0f} s", flush=True)
        return {**self.env, ENV: str(self.socket)}

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.socket.parent, ignore_errors=True)


def _started_by_papermill() -> bool:
    """Whether the process that asked for this kernel is papermill (its kernel manager runs in the
    papermill process; JupyterLab's in jupyter-server)."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    # `papermill ...` (its console script, maybe run by an interpreter) or `python -m papermill ...`
    if any(os.path.basename(a) == b"papermill" for a in args[:2]):
        return True
    return b"-m" in args[:-1] and args[args.index(b"-m") + 1] == b"papermill"


def _plain_kernel(argv: list[str]) -> int:
    """No kernel server: this process becomes the kernel, as `python -m ipykernel_launcher` would."""
    sys.argv = ["ipykernel_launcher", *argv]
    _run_ipykernel()
    return 0


def launch(argv: list[str]) -> int:
    # Progress bars (cgd/runtime/progress.py): text for a papermill run, which has no frontend to draw widgets.
    if "CGD_PROGRESS" not in os.environ and _started_by_papermill():
        os.environ["CGD_PROGRESS"] = "text"
    path = os.environ.get(ENV)
    sock = None
    if path:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
        except OSError:
            sock = None
    if sock is None:
        return _plain_kernel(argv)
    _send(sock, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
    msg, _ = _recv(sock)
    if msg is None:
        return _plain_kernel(argv)

    def forward(sig, _frame):
        try:
            _send(sock, {"signal": int(sig)})
        except OSError:
            pass
        if sig == signal.SIGTERM:
            sys.exit(143)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    while True:
        try:
            msg, _ = _recv(sock)
        except InterruptedError:
            continue
        if msg is None or "exit" in msg:
            return 0


def install_spec(prefix: str = sys.prefix, name: str = "cgd") -> str:
    """Point the installed `cgd` kernelspec at this launcher (after `ipykernel install`)."""
    spec = os.path.join(prefix, "share", "jupyter", "kernels", name, "kernel.json")
    with open(spec) as fh:
        data = json.load(fh)
    data["argv"] = [sys.executable, "-m", "cgd.runtime.kernel", "launch", "-f", "{connection_file}"]
    with open(spec, "w") as fh:
        json.dump(data, fh, indent=1)
    return spec


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "launch":
        return launch(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m cgd.runtime.kernel")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="preload the heavy libraries and fork a kernel per request")
    p.add_argument("--socket", required=True)
    sub.add_parser("install", help="point the cgd kernelspec of this venv at the launcher")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.socket)
    else:
        print(install_spec())
    return 0


if __name__ == "__main__":
    sys.exit(main())
