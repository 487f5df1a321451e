"""Stages 02-04 logic: statuses, resume after a kill, reports, and the correct/incorrect mixture."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgd import config as P
from cgd.distill import augment, prompts
from cgd.generation import Backend, Completion
from cgd.generation.reference import ReferenceBackend
from cgd.runtime.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]


class Scripted(Backend):
    """Replies from a table keyed by request id: the test controls every failure mode."""

    name = "scripted"

    def __init__(self, replies, followups=None):
        self.replies, self.followups = replies, followups or {}
        self.calls = 0
        self.followup_gens = []

    def generate(self, requests, seed, gen=None):
        self.calls += 1
        if gen is not None:
            self.followup_gens.append(gen)
            return [self.followups[r.id] for r in requests]
        return [self.replies[r.id] for r in requests]


def _rows(n):
    return [{"id": f"q{i}", "question": f"What is {i} + {i}?", "reference_solution": f"{i}+{i}={2*i}\n#### {2*i}",
             "reference_answer": str(2 * i), "source": "test"} for i in range(n)]


def _run(spec, rows, backend, tmp_path, name, shard=2):
    return augment.run_stage(spec, rows, lambda: backend, tmp_path / name, shard, 0, f"fp-{name}")


def test_statuses_flow_through_all_three_stages(tmp_path):
    rows = _rows(6)
    rollout_replies = {
        "q0": Completion("0+0=0, so \\boxed{0}", "stop", 5, 7),
        "q1": Completion("1+1=3, so \\boxed{3}", "stop", 5, 7),
        "q2": Completion("", "stop"),                           # empty
        "q3": Completion("3+3 is ... and then", "length", 5, 9),  # truncated at max tokens
        "q4": Completion("", "error", error="APITimeoutError"),  # backend failure
        "q5": Completion("5+5=10. The answer is 10", "stop", 5, 6),
    }
    out, run = _run(augment.rollout_spec(prompts.load("rollout")), rows, Scripted(rollout_replies), tmp_path, "r")
    assert [r["rollout_status"] for r in out] == ["ok", "ok", "empty", "truncated", "error", "ok"]
    assert [r["verifier_correct"] for r in out] == [True, False, None, None, None, True]
    report = augment.stage_report(out, run)
    assert report["by_status"] == {"empty": 1, "error": 1, "ok": 3, "truncated": 1}
    assert report["student_accuracy"] == round(2 / 3, 4) and report["completion_tokens_this_run"] == 29

    critique_replies = {
        "q0": Completion("Correct.\nConclusion: right", "stop"),
        "q1": Completion("1+1 is 2, not 3.\nConclusion: right", "stop"),  # teacher misjudges
        "q5": Completion("Looks fine to me.", "stop"),                    # no conclusion
    }
    backend = Scripted(critique_replies)
    out, run = _run(augment.critique_spec(prompts.load("critique")), out, backend, tmp_path, "c")
    assert [r["critique_status"] for r in out] == ["ok", "ok", "skipped", "skipped", "skipped", "no_conclusion"]
    report = augment.stage_report(out, run)
    assert report["critique_accuracy"] == 0.5 and report["critique_compared"] == 2
    assert report["critique_vs_verifier"] == {"conclusion_right__verifier_correct": 1,
                                              "conclusion_right__verifier_incorrect": 1}
    assert run.requests == 3  # skipped rows never reach the backend

    out, run = _run(augment.refine_spec(prompts.load("refine")), out, ReferenceBackend("refine"), tmp_path, "f")
    assert [r["status"] for r in out] == ["ok", "ok", "rollout:empty", "rollout:truncated",
                                          "rollout:error", "critique:no_conclusion"]
    assert [r["refined_correct"] for r in out[:2]] == [True, True]
    assert augment.stage_report(out, run)["overall_status"] == {
        "critique:no_conclusion": 1, "ok": 2, "rollout:empty": 1, "rollout:error": 1, "rollout:truncated": 1}


def test_conclusion_followup_for_critiques_without_one(tmp_path, raw_params):
    rows = [{**r, "student_answer": "\\boxed{0}", "rollout_status": "ok", "verifier_correct": False}
            for r in _rows(4)]
    replies = {"q0": Completion("Fine.\nConclusion: right", "stop"),
               "q1": Completion("Step 2 adds wrongly.", "stop"),
               "q2": Completion("Hmm.", "stop"),
               "q3": Completion("Hmm.", "stop")}
    followups = {"q1": Completion("Wrong, the sum is off.", "stop"), "q2": Completion("The answer is", "stop"),
                 "q3": Completion("", "error", error="APIError")}
    backend = Scripted(replies, followups)
    cfg = P.from_dict(raw_params)
    spec = augment.critique_spec(prompts.load("critique"), cfg.critique)
    out, run = _run(spec, rows, backend, tmp_path, "c", shard=4)
    assert [r["conclusion"] for r in out] == ["right", "wrong", "missing", "missing"]
    assert [r["conclusion_source"] for r in out] == ["critique", "followup", None, None]
    assert [r["critique_status"] for r in out] == ["ok", "ok", "no_conclusion", "no_conclusion"]
    assert out[1]["critique"].endswith("Step 2 adds wrongly.\n\nConclusion: wrong")
    assert out[1]["critique_agrees_with_verifier"] is True and run.followups == 3
    assert backend.followup_gens[0].max_new_tokens == 8 and backend.followup_gens[0].temperature == 0.0
    report = augment.stage_report(out, run)
    assert report["conclusion_sources"] == {"critique": 1, "followup": 1, "none": 2}
    assert report["disagreement_with_verifier_by_source"] == {
        "critique": {"compared": 1, "disagree": 1, "rate": 1.0},
        "followup": {"compared": 1, "disagree": 0, "rate": 0.0}}


def test_reference_critique_agrees_with_verifier_end_to_end(tmp_path):
    rows = _rows(8)
    replies = {f"q{i}": Completion(f"so \\boxed{{{2 * i + (i % 3 == 0)}}}", "stop") for i in range(8)}
    out, _ = _run(augment.rollout_spec(prompts.load("rollout")), rows, Scripted(replies), tmp_path, "r")
    out, run = _run(augment.critique_spec(prompts.load("critique")), out, ReferenceBackend("critique"), tmp_path, "c")
    report = augment.stage_report(out, run)
    assert report["critique_accuracy"] == 1.0 and report["conclusions"] == {"right": 5, "wrong": 3}
    out, run = _run(augment.refine_spec(prompts.load("refine")), out, ReferenceBackend("refine"), tmp_path, "f")
    assert augment.stage_report(out, run)["refined_accuracy"] == 1.0


def test_finished_shards_are_not_regenerated_and_stale_ones_are(tmp_path):
    rows = _rows(5)
    replies = {r["id"]: Completion("\\boxed{1}", "stop") for r in rows}
    spec = augment.rollout_spec(prompts.load("rollout"))
    first = Scripted(replies)
    augment.run_stage(spec, rows, lambda: first, tmp_path / "s", 2, 0, "fp-a")
    assert first.calls == 3
    loads = []
    _, run = augment.run_stage(spec, rows, lambda: loads.append(1) or first, tmp_path / "s", 2, 0, "fp-a")
    assert run.shards_resumed == 3 and loads == []  # model never loaded when all shards exist
    again = Scripted(replies)
    _, run = augment.run_stage(spec, rows, lambda: again, tmp_path / "s", 2, 0, "fp-b")
    assert run.restarted and again.calls == 3


_KILLABLE = r"""
import sys, time
from cgd.distill import augment, prompts
from cgd import config as P
from cgd.generation.hf import TransformersBackend
from cgd.runtime.io import read_jsonl, write_jsonl

class Slow(TransformersBackend):  # slow enough that the test can kill it between shards
    def generate(self, requests, seed):
        time.sleep(0.4)
        return super().generate(requests, seed)

cfg = P.load("params.yaml", {"student.model": sys.argv[1], "rollout.max_new_tokens": 8,
                             "rollout.temperature": 0.8, "rollout.batch_size": 2})
rows = list(read_jsonl(sys.argv[2]))
out, run = augment.run_stage(augment.rollout_spec(prompts.load("rollout")), rows,
                             lambda: Slow(cfg.student, cfg.rollout), sys.argv[3], 2, cfg.seed, "fp")
write_jsonl(sys.argv[3] + "/rollouts.jsonl", out)
print("resumed", run.shards_resumed)
"""


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_duplicating_rows(tmp_path, tiny_model):
    from cgd.runtime.io import write_jsonl

    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, _rows(10))
    script = tmp_path / "run.py"
    script.write_text(_KILLABLE)
    cmd = lambda out: [sys.executable, str(script), str(tiny_model), str(inp), str(out)]

    # An uninterrupted run, for comparison.
    subprocess.run(cmd(tmp_path / "clean"), check=True, cwd=REPO, capture_output=True, timeout=300)
    clean = list(read_jsonl(tmp_path / "clean/rollouts.jsonl"))

    # A run killed with SIGKILL once two shards are on disk, then rerun to completion.
    proc = subprocess.Popen(cmd(tmp_path / "killed"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shard_dir = tmp_path / "killed" / "shards"
    deadline = time.time() + 120
    while len(list(shard_dir.glob("shard-*.jsonl"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(shard_dir.glob("shard-*.jsonl")))
    assert 2 <= done < 5, f"the kill came too late to test resuming ({done} shards)"
    assert not (tmp_path / "killed/rollouts.jsonl").exists()
    rerun = subprocess.run(cmd(tmp_path / "killed"), check=True, cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert f"resumed {done}" in rerun.stdout
    resumed = list(read_jsonl(tmp_path / "killed/rollouts.jsonl"))
    assert [r["id"] for r in resumed] == [r["id"] for r in clean]
    assert resumed == clean  # sampled with per-shard seeds: byte-for-byte the same rows


def _mixture_rows(n_inc, n_cor, n_bad=2):
    rows = []
    for i in range(n_inc + n_cor + n_bad):
        status = "ok" if i < n_inc + n_cor else "critique:no_conclusion"
        wrong = i < n_inc
        rows.append({"id": f"m{i}", "status": status, "conclusion": "wrong" if wrong else "right",
                     "verifier_correct": (not wrong) if i % 7 else None})
    return rows


def _refine_cfg(raw_params, **kw):
    raw_params["refine"].update(kw)
    return P.from_dict(raw_params).refine


@pytest.mark.parametrize("frac, n_inc", [(0.0, 0), (0.25, 5), (0.5, 10), (0.75, 15), (1.0, 20)])
def test_mixture_fractions_at_fixed_total(raw_params, frac, n_inc):
    cfg = _refine_cfg(raw_params, incorrect_fraction=frac, mixture_total=20, label_source="critique")
    out, report = augment.select_mixture(_mixture_rows(30, 30), cfg, seed=0)
    chosen = [r for r in out if r["in_mixture"]]
    assert len(chosen) == 20 and sum(r["conclusion"] == "wrong" for r in chosen) == n_inc
    assert all(r["status"] == "ok" for r in chosen)
    assert report["excluded_not_ok"] == 2 and report["excluded_by_mixture"] == 40
    again, _ = augment.select_mixture(_mixture_rows(30, 30), cfg, seed=0)
    assert again == out


def test_mixture_all_usable_and_too_few(raw_params):
    cfg = _refine_cfg(raw_params, incorrect_fraction=None, mixture_total=None, label_source="verifier")
    out, report = augment.select_mixture(_mixture_rows(3, 4), cfg, seed=0)
    assert report["in_mixture"] == 7 and sum(r["in_mixture"] for r in out) == 7
    cfg = _refine_cfg(raw_params, incorrect_fraction=0.5, mixture_total=10, label_source="critique")
    with pytest.raises(ValueError, match="refine.mixture_total"):
        augment.select_mixture(_mixture_rows(3, 20), cfg, seed=0)
    cfg = _refine_cfg(raw_params, incorrect_fraction=0.5, mixture_total=None, label_source="critique")
    _, report = augment.select_mixture(_mixture_rows(3, 20), cfg, seed=0)
    assert (report["in_mixture"], report["in_mixture_incorrect"]) == (6, 3)


def test_mixture_settings_do_not_change_the_generation_fingerprint(raw_params):
    a = P.from_dict(raw_params)
    raw_params["refine"].update(incorrect_fraction=0.5, label_source="critique")
    b = P.from_dict(raw_params)
    p = prompts.load("refine")
    fp = lambda cfg: augment.generation_fingerprint("refine", "d", P.section(cfg, "refine"),
                                                    P.section(cfg, "teacher"), p, 0)
    assert fp(a) == fp(b)
    raw_params["refine"]["max_new_tokens"] = 17
    assert fp(P.from_dict(raw_params)) != fp(a)


def test_difficulty_by_status_shows_what_truncation_drops():
    """The kept rows' references are short and the student was right on them; the truncated rows'
    are long and the student was wrong: the report shows the skew a drop would cause."""
    rows = ([{"rollout_status": "ok", "reference_solution": "x" * 100, "verifier_correct": True}] * 3
            + [{"rollout_status": "ok", "reference_solution": "x" * 140, "verifier_correct": None}]
            + [{"rollout_status": "truncated", "reference_solution": "x" * 900, "verifier_correct": False}] * 2)
    out = augment.difficulty_by_status(rows, "rollout_status")
    assert out == {"ok": {"rows": 4, "reference_solution_chars_median": 100.0, "student_correct_rate": 1.0},
                   "truncated": {"rows": 2, "reference_solution_chars_median": 900.0, "student_correct_rate": 0.0}}
