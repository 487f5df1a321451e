"""Slurm batch scripts (cgd/launch/slurm.py), checked against a real one-node Slurm: Debian's
slurm-wlm and munge, started here as root with a config of their own (SLURM_CONF in a temporary
folder), as `.ci/run` installs them. Where that is impossible the Slurm tests are skipped, saying why."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cgd.launch import slurm

REPO = Path(__file__).resolve().parents[1]
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue")


# ---------------------------------------------------------------- the script, no scheduler needed


@pytest.mark.parametrize("profile,nodes,gpus", [("llama8b-webinstruct", 1, 8), ("mixtral-webinstruct", 2, 8),
                                                ("s1-webinstruct", 1, 8), ("qwen25math7b-webinstruct", 1, 8)])
def test_a_profile_s_job_is_sized_by_its_vllm_roles(profile, nodes, gpus):
    job = slurm.job_for(profile)
    assert (job.nodes, job.gpus_per_node) == (nodes, gpus)
    text = slurm.script(job)
    assert f"#SBATCH --nodes={nodes}" in text and f"#SBATCH --gpus-per-node={gpus}" in text
    assert "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --requeue" in text
    assert "#SBATCH --signal=B:USR1@600" in text and "HF_HUB_OFFLINE=1" in text
    assert f"cgd profile configs/profiles/{profile}.yaml" in text
    assert ("Training stages use node 0's GPUs" in text) == (nodes > 1)
    rehearsal = slurm.script(slurm.job_for(profile, "rehearse"))
    assert "--gpus-per-node" not in rehearsal and "--mode rehearse" in rehearsal and "cgd profile" not in rehearsal


def test_the_job_s_options_reach_the_header():
    job = slurm.job_for("llama8b-webinstruct", partition="gpu", time="2-00:00:00", account="lab", cpus_per_task=32,
                        hf_home="/shared/hf")
    text = slurm.script(job)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=2-00:00:00", "#SBATCH --account=lab",
                 "#SBATCH --cpus-per-task=32", "export HF_HOME=/shared/hf"):
        assert line in text
    with pytest.raises(ValueError, match="no profile 'nope'"):
        slurm.job_for("nope")


def test_each_rank_runs_the_head_s_pipeline_or_follows_it():
    assert slurm.node_command("run", "mixtral-webinstruct", 0)[-1] == "repro"
    assert slurm.node_command("run", "mixtral-webinstruct", 1)[-4:] == ["cgd", "follow-server", "--node-rank", "1"]
    assert slurm.node_command("rehearse", "mixtral-webinstruct", 0, "/s")[-4:] == [
        "rehearse", "configs/profiles/mixtral-webinstruct.yaml", "--scratch", "/s"]


def test_the_docs_page_prints_the_generator_s_scripts():
    """docs/slurm.md shows each profile's script as the generator writes it (regenerate: python -m
    cgd slurm --profile NAME)."""
    page = (REPO / "docs" / "slurm.md").read_text()
    for path in sorted((REPO / "configs" / "profiles").glob("*.yaml")):
        text = slurm.script(slurm.job_for(path.stem))
        assert f"```bash\n{text}```" in page, f"docs/slurm.md is stale for {path.stem}: paste `python -m cgd slurm --profile {path.stem}`"


# ---------------------------------------------------------------- a real one-node Slurm


def _why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "a one-node Slurm here needs root (slurmd runs jobs as their user)"
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): "
                "apt-get install slurm-wlm munge (.ci/run does)")
    if not Path("/etc/munge/munge.key").exists():
        return "munge has no key (/etc/munge/munge.key): reinstall munge"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged (if none runs), slurmctld and slurmd on this machine, one node, one partition."""
    why = _why_no_slurm()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool", "log"):
        (root / d).mkdir()
    host = socket.gethostname()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=cgdtest", f"SlurmctldHost={host}", "SlurmctldPort=16817", "SlurmdPort=16818",
        "SlurmUser=root", "AuthType=auth/munge", f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "ReturnToService=2", "JobRequeue=1",
        "KillWait=30", f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
    subprocess.run(["slurmctld"], env=env, check=True)
    subprocess.run(["slurmd"], env=env, check=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        if out.strip() in ("idle", "mixed", "allocated"):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the one-node Slurm did not come up: {(root / 'log' / 'slurmctld.log').read_text()[-2000:]}")
    yield env
    subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
    for pid in ("slurmd.pid", "slurmctld.pid"):
        if (root / pid).exists():
            subprocess.run(["kill", (root / pid).read_text().strip()], capture_output=True)


def _wait(env: dict, job: str, timeout: float) -> str:
    """The job's final state (sacct is not configured: scontrol until it leaves the queue)."""
    deadline = time.time() + timeout
    state = "?"
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env, capture_output=True, text=True).stdout
        state = next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")), state)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(2)
    raise TimeoutError(f"job {job} still {state} after {timeout} s")


def test_several_nodes_each_run_their_part(cluster, tmp_path):
    """The several-node script's per-node logic as three tasks on this node: rank 0 runs the pipeline,
    ranks 1 and 2 follow it, all with the head's address (the commands printed, not run)."""
    out = subprocess.run(["srun", "-n", "3", "--overcommit", "--export=ALL,MASTER_ADDR=head0", str(REPO / ".venv/bin/python"), "-m",
                          "cgd", "slurm-node", "--mode", "run", "--profile", "mixtral-webinstruct", "--dry-run"],
                         env=cluster, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = sorted(out.stdout.splitlines())
    assert len(lines) == 3 and all("(head head0)" in line for line in lines)
    assert lines[0].startswith("rank 0 of 3") and lines[0].endswith(" repro")
    assert lines[1].startswith("rank 1 of 3") and lines[1].endswith("follow-server --node-rank 1")
    assert lines[2].startswith("rank 2 of 3") and lines[2].endswith("follow-server --node-rank 2")


@pytest.mark.slow
def test_a_rehearsal_runs_to_completion_through_the_generated_script(cluster, tmp_path):
    """sbatch the generated script of a CPU rehearsal (the CI profile) and wait for it to finish."""
    from cgd.rehearsal.rehearse import CI_PROFILE

    logs, scratch = tmp_path / "logs", tmp_path / "scratch"
    job = slurm.job_for(CI_PROFILE, "rehearse", logs=str(logs), scratch=str(scratch))
    path = slurm.write(job, tmp_path / "rehearse.sbatch")
    env = {**cluster, "CGD_STANDIN_CACHE": os.environ.get("CGD_STANDIN_CACHE", str(REPO / ".cache" / "standins"))}
    job_id = subprocess.run(["sbatch", "--parsable", str(path)], env=env, cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    state = _wait(cluster, job_id, 1800)
    log = next(logs.glob("*.out")).read_text()
    assert state == "COMPLETED", log[-3000:]
    assert f"job {job_id} (restart 0)" in log and "rank 0 of 1" in log
    assert f"rehearsal of {CI_PROFILE}: ok" in log
    assert (scratch / "rehearsal.json").exists()


def test_the_time_limit_signal_stops_the_step_and_requeues_the_job(cluster, tmp_path):
    """Slurm's pre-limit USR1 (sent here at once with `scancel --batch --signal=USR1`): the script sends
    SIGINT to the step, requeues the job, and the requeued job (restart 1) runs the step again. The
    step is a stand-in for the pipeline that records what it saw."""
    seen = tmp_path / "seen.txt"
    head = tmp_path / "head.py"
    head.write_text(
        "import os, signal, sys, time\n"
        f"seen = open({str(seen)!r}, 'a')\n"
        "restart = os.environ.get('SLURM_RESTART_COUNT', '0')\n"
        "seen.write(f'start {restart}\\n'); seen.flush()\n"
        "if restart != '0':\n"
        "    sys.exit(0)\n"
        "def stop(*_):\n"
        "    seen.write('SIGINT\\n'); seen.flush(); sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "time.sleep(600)\n")
    job = slurm.job_for("llama8b-base-webinstruct", "rehearse", logs=str(tmp_path / "logs"))
    text = slurm.script(job)
    step = next(line for line in text.splitlines() if line.startswith("srun "))
    text = text.replace(step, step.split(" .venv/bin/python")[0] + f" {REPO / '.venv/bin/python'} {head} &")
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    (tmp_path / "logs").mkdir()
    job_id = subprocess.run(["sbatch", "--parsable", str(path)], env=cluster, cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    deadline = time.time() + 120
    while not (seen.exists() and "start 0" in seen.read_text()):
        assert time.time() < deadline, "the step never started"
        time.sleep(1)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], env=cluster, check=True)
    # a requeued job waits a while before it may start again (Slurm sets its begin time ahead): start it now
    deadline = time.time() + 120
    while "SIGINT" not in seen.read_text() or "JobState=PENDING" not in subprocess.run(
            ["scontrol", "show", "job", job_id, "-o"], env=cluster, capture_output=True, text=True).stdout:
        assert time.time() < deadline, f"not requeued: {seen.read_text()}"
        time.sleep(1)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=cluster, check=True)
    state = _wait(cluster, job_id, 300)
    log = next((tmp_path / "logs").glob("*.out")).read_text()
    assert state == "COMPLETED", log
    assert seen.read_text().split("\n")[:3] == ["start 0", "SIGINT", "start 1"], seen.read_text()
    assert "stopping the pipeline (SIGINT), then requeueing" in log
    assert f"job {job_id} (restart 0)" in log and f"job {job_id} (restart 1)" in log


@pytest.mark.slow
def test_a_job_cancelled_mid_stage_and_resubmitted_generates_no_row_twice(cluster, tmp_path, tiny_model, raw_params):
    """The generated script on a real stage: `dvc repro` of stage 02 on the tiny model, the job cancelled
    (`scancel`) once some shards are written, the same script submitted again. The second job keeps the
    first one's shards untouched and generates only the rest."""
    import hashlib
    import json
    import sys

    import yaml

    from tests.test_sweeps import _tiny_params, checkout_copy

    repo = checkout_copy(tmp_path / "repo")
    shutil.copytree(tiny_model, repo / "models/smollm2-135m-instruct")
    raw = _tiny_params(raw_params, "models/smollm2-135m-instruct")
    raw["data"]["n_train"] = 24
    raw["rollout"].update(batch_size=2, max_new_tokens=192, temperature=1.0)  # 12 shards, each a moment
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**cluster, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "repro", "-s", "sample_data"], cwd=repo, env=env, check=True, capture_output=True, timeout=600)

    text = slurm.script(slurm.job_for("llama8b-base-webinstruct", logs="logs"))
    text = "\n".join(line for line in text.splitlines() if "cgd profile" not in line) + "\n"  # this repo's params
    step = next(line for line in text.splitlines() if line.startswith("srun "))
    text = text.replace(step, step.split(" .venv/bin/python")[0] + f" {dvc} repro -s rollout &")
    text = text.replace("#SBATCH --gpus-per-node=8\n", "").replace("#SBATCH --exclusive\n", "")
    path = repo / "job.sbatch"
    path.write_text(text)
    (repo / "logs").mkdir()
    sbatch = lambda: subprocess.run(["sbatch", "--parsable", str(path)], env=env, cwd=repo, check=True,
                                    capture_output=True, text=True).stdout.strip()
    shards = repo / "data/02_rollout/shards"

    first = sbatch()
    deadline = time.time() + 600
    while not (shards.is_dir() and any(shards.glob("shard-*.jsonl"))):
        assert time.time() < deadline, "no shard written"
        time.sleep(0.2)
    subprocess.run(["scancel", first], env=env, check=True)
    assert _wait(cluster, first, 120) == "CANCELLED"
    kept = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards.glob("shard-*.jsonl")}
    kept_rows = sum(len(p.read_text().splitlines()) for p in shards.glob("shard-*.jsonl"))
    assert 0 < len(kept) < 12, f"cancelled too late to test a resume: {len(kept)} shards"

    second = sbatch()
    log = lambda: "\n".join(p.read_text() for p in sorted((repo / "logs").glob("*.out")))
    assert _wait(cluster, second, 900) == "COMPLETED", log()[-3000:]
    assert {n: hashlib.sha256((shards / n).read_bytes()).hexdigest() for n in kept} == kept  # untouched
    m = json.loads((repo / "metrics/02_rollout.json").read_text())
    rows = [json.loads(line) for line in (repo / "data/02_rollout/rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == m["rows"] == 24 and len({r["id"] for r in rows}) == 24
    assert m["shards_resumed"] == len(kept)
    assert m["requests_this_run"] == 24 - kept_rows  # every other row generated once, in the second job
