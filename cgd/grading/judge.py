"""The one judge of "is this answer right": every stage that asks calls here.

Two rules judge each output (`GRADERS`):
  committed  ours (cgd.grading.rules): credit only for the answer the output commits to
             (cgd.grading.commitment), each benchmark by its own conventions.
  harness    the authors' (cgd.grading.harness): math-evaluation-harness as the CGD release runs it,
             the rule behind the paper's numbers.
Evaluation records both verdicts on every sample and reports under `eval.grader`; the data stages
(stage 02's verifier label, stage 04's refined label, the diagnostics) use ours.
"""

from __future__ import annotations

from cgd.grading import harness, rules
from cgd.grading.rules import Key, Rules, Verdict

GRADERS = ("committed", "harness")


def judge(key: Key, output: str, settings: Rules = Rules()) -> dict[str, Verdict]:
    """The verdict of each rule on `output`."""
    return {"committed": rules.grade(key, output, settings), "harness": harness.grade(key, output)}


def is_correct(gold: str | None, text: str, timeout_s: int = 5) -> bool | None:
    """Our rule's verdict on a solution to a training problem (a math answer); None without a gold."""
    if gold is None:
        return None
    return rules.grade(Key(gold), text, Rules(timeout_s=timeout_s)).correct


def _judge_item(item: tuple) -> dict:
    key, output, settings = item
    return {name: v.to_dict() for name, v in judge(key, output, settings).items()}


def grade_many(items: list[tuple[Key, str]], settings: Rules = Rules(), workers: int = 1,
               progress: bool = True) -> list[dict[str, Verdict]]:
    """Judge (key, output) items under both rules, in order, over `workers` processes.

    Each sample is bounded by math-verify's own timeouts (parse gold, parse output, compare: at most
    3 x timeout_s) and the harness's 3 s; both use SIGALRM, which needs a process's main thread;
    worker processes have one.
    """
    from cgd.runtime.progress import bar

    jobs = [(key, output, settings) for key, output in items]
    if workers <= 1 or len(jobs) < 64:
        results = [_judge_item(j) for j in bar(jobs, desc="grade", disable=not progress)]
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = list(bar(pool.imap(_judge_item, jobs, chunksize=32), total=len(jobs),
                               desc="grade", disable=not progress))
    return [{name: Verdict(**v) for name, v in r.items()} for r in results]
