"""Slurm batch scripts for a profile: `python -m cgd slurm --profile NAME` (`make slurm NAME=...`).

One plain sbatch script per run, in the layout peers ship (OpenRLHF's `train_*_slurm.sh`, fms-fsdp's
`train.slurm`): one task per node, `srun` starting `python -m cgd slurm-node` on every node, which
reads its rank from Slurm (`SLURM_PROCID`: with one task per node, the node's index) and runs

- on node 0, the pipeline: `dvc repro` on the checkout's params.yaml (the profile applied by the
  script's first step, `make profile`), or `python -m cgd rehearse` for a CPU rehearsal;
- on node K > 0, `python -m cgd follow-server --node-rank K`: its share of every vLLM server the
  head's stages start (`<role>.nodes` > 1), until the head's task ends (`srun --wait`).

The head's address is the job's first host (`MASTER_ADDR`, which `<role>.head_address: $MASTER_ADDR`
reads). The job's size comes from the profile: the most nodes any vLLM role spans and, per node, the
most GPUs a role's replicas take there (data parallel x tensor parallel / nodes).

Time limits: the script asks Slurm for SIGUSR1 `signal_s` seconds before the limit (`--signal=B:USR1@N`),
sends SIGINT to the pipeline's step (every stage writes shards and checkpoints atomically and resumes
from them), waits for it to stop and requeues the job (`--requeue`, `scontrol requeue`); the requeued
job runs the same script and `dvc repro` continues from the shards, checkpoints and cached stages. A
job cancelled outright (`scancel`) is resumed the same way by submitting the script again.

May import: cgd.runtime, cgd.config, cgd.rehearsal.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cgd.rehearsal.fidelity import profile_params  # params.yaml with a profile laid over it

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "configs" / "profiles"
ROLES = ("student", "teacher")


@dataclass(frozen=True)
class Job:
    profile: str  # configs/profiles/<profile>.yaml
    nodes: int
    gpus_per_node: int  # 0: a CPU job (the rehearsal)
    mode: str = "run"  # run: dvc repro with the profile applied | rehearse: python -m cgd rehearse (CPU)
    partition: str | None = None
    time: str | None = None  # Slurm's --time, e.g. 2-00:00:00
    account: str | None = None
    cpus_per_task: int | None = None
    signal_s: int = 600  # SIGUSR1 this long before the limit: time for a stage to stop cleanly
    hf_home: str | None = None  # the hub cache the nodes share; None: the environment's
    offline: bool = True  # HF_HUB_OFFLINE=1: a compute node reads models and datasets from HF_HOME only
    logs: str = "runs/slurm"
    scratch: str | None = None  # rehearse: the scratch copy (default rehearsals/<profile>)


def needs(raw: dict) -> tuple[int, int]:
    """(nodes, GPUs per node) a profile's vLLM roles ask for: the most nodes any role spans, and the
    most GPUs one role's replicas take on a node (the ZeRO-3 training uses every GPU of the node)."""
    nodes = max(int(raw[r].get("nodes") or 1) for r in ROLES)
    per_node = max(math.ceil(int(raw[r]["data_parallel_size"]) * int(raw[r]["tensor_parallel_size"])
                             / int(raw[r].get("nodes") or 1)) for r in ROLES)
    return nodes, per_node


def job_for(profile: str, mode: str = "run", nodes: int | None = None, **slurm) -> Job:
    """The job a profile needs (`nodes` overrides the profile's count); a rehearsal takes no GPU."""
    if not (PROFILES / f"{profile}.yaml").exists():
        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        raise ValueError(f"no profile {profile!r}: one of {', '.join(known)}")
    want_nodes, gpus = needs(profile_params(profile))
    if mode == "rehearse":
        want_nodes, gpus = 1, 0
    return Job(profile, nodes or want_nodes, gpus, mode, **slurm)


def script(job: Job) -> str:
    """The sbatch script of a job: header, environment, the step on every node, the time-limit trap."""
    head = ["#!/bin/bash", f"#SBATCH --job-name=cgd-{job.profile}", f"#SBATCH --nodes={job.nodes}",
            "#SBATCH --ntasks-per-node=1"]
    if job.gpus_per_node:
        head += [f"#SBATCH --gpus-per-node={job.gpus_per_node}", "#SBATCH --exclusive"]
    if job.cpus_per_task:
        head.append(f"#SBATCH --cpus-per-task={job.cpus_per_task}")
    for flag, value in (("partition", job.partition), ("time", job.time), ("account", job.account)):
        if value:
            head.append(f"#SBATCH --{flag}={value}")
    head += [f"#SBATCH --output={job.logs}/%x-%j.out", "#SBATCH --open-mode=append",
             f"#SBATCH --signal=B:USR1@{job.signal_s}", "#SBATCH --requeue"]
    env = ["export PYTHONUNBUFFERED=1"]
    if job.hf_home:
        env.append(f"export HF_HOME={shlex.quote(job.hf_home)}")
    if job.offline:
        env.append("export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1")
    profile_step = ("" if job.mode == "rehearse" else
                    f"# the profile onto the checkout's params.yaml (validated; a requeued job finds it applied)\n"
                    f".venv/bin/python -m cgd profile configs/profiles/{job.profile}.yaml\n")
    node_cmd = f".venv/bin/python -m cgd slurm-node --mode {job.mode} --profile {job.profile}"
    if job.scratch:
        node_cmd += f" --scratch {shlex.quote(job.scratch)}"
    several = ("" if job.nodes == 1 else
               "# Training stages use node 0's GPUs: a profile whose ZeRO-3 states need more nodes (mixtral-webinstruct)\n"
               "# trains those runs by hand across the nodes (docs/pipeline.md, Training), then `dvc commit`.\n")
    body = f"""
# Written by `python -m cgd slurm --profile {job.profile}` (cgd/launch/slurm.py); edit freely.
# Node 0 runs the pipeline, every other node follows its vLLM servers (docs/slurm.md).
{several}set -uo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
mkdir -p {job.logs}
{chr(10).join(env)}
# site setup (modules, containers) goes here, e.g.: module load cuda/12.4
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
echo "job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}) on $SLURM_JOB_NODELIST; head $MASTER_ADDR"
{profile_step}
# Slurm's USR1 ({job.signal_s} s before the time limit): stop the pipeline cleanly, then requeue the job;
# it reruns this script and the stages continue from their shards and checkpoints.
stopping=0
on_limit() {{
  stopping=1
  echo "time limit in {job.signal_s} s: stopping the pipeline (SIGINT), then requeueing"
  scancel --signal=INT "$SLURM_JOB_ID.0"
}}
trap on_limit USR1
srun --ntasks-per-node=1 --kill-on-bad-exit=1 --wait=120 --label {node_cmd} &
step=$!
wait "$step"; rc=$?
while kill -0 "$step" 2>/dev/null; do wait "$step"; rc=$?; done  # a trap interrupts wait: wait again
if [ "$stopping" = 1 ]; then
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$rc"
"""
    return "\n".join(head) + "\n" + body


def node_command(mode: str, profile: str, rank: int, scratch: str | None = None) -> list[str]:
    """What node `rank` runs: the pipeline (0) or its share of the head's vLLM servers (K > 0)."""
    py = sys.executable
    if rank > 0:
        return [py, "-m", "cgd", "follow-server", "--node-rank", str(rank)]
    if mode == "rehearse":
        return [py, "-m", "cgd", "rehearse", str(PROFILES.relative_to(REPO) / f"{profile}.yaml"),
                *(["--scratch", scratch] if scratch else [])]
    dvc = str(Path(py).with_name("dvc")) if Path(py).with_name("dvc").exists() else "dvc"
    return [dvc, "repro"]


def node_main(mode: str, profile: str, dry_run: bool = False, scratch: str | None = None) -> int:
    """`python -m cgd slurm-node`: this task's command from Slurm's environment (exec'd, or printed)."""
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    argv = node_command(mode, profile, rank, scratch)
    line = (f"rank {rank} of {os.environ.get('SLURM_NTASKS', '1')} on {os.environ.get('SLURMD_NODENAME', '?')} "
            f"(head {os.environ.get('MASTER_ADDR', '?')}): {shlex.join(argv)}")
    print(line, flush=True)
    if dry_run:
        return 0
    os.execv(argv[0], argv) if os.path.isabs(argv[0]) else os.execvp(argv[0], argv)
    return 0  # not reached


def write(job: Job, out: str | Path | None = None) -> Path:
    """The script, written atomically; the log folder made now (Slurm opens --output before the
    script runs, and a job whose folder is missing fails without a log)."""
    path = Path(out or REPO / "runs" / "slurm" / f"{job.profile}.sbatch")
    path.parent.mkdir(parents=True, exist_ok=True)
    (REPO / job.logs).mkdir(parents=True, exist_ok=True)  # an absolute `logs` replaces REPO
    tmp = path.with_suffix(".tmp")
    tmp.write_text(script(job))
    os.replace(tmp, path)
    return path


def submit(path: str | Path, cwd: str | Path = REPO) -> str:
    """`sbatch --parsable` the script from the checkout; returns the job id."""
    out = subprocess.run(["sbatch", "--parsable", str(path)], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip().split(";")[0]
