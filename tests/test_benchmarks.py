"""The benchmark registry: embedded sets and every hub loader on a local mirror of its schema."""

import json
import typing

import pytest

from cgd.data import benchmarks
from tests.conftest import FIXTURES

HUB = [name for name, b in benchmarks.REGISTRY.items() if b.hub_id]


def test_registry_has_the_papers_benchmarks():
    group1 = {"math500", "minerva", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25"}
    group2 = {"theoremqa", "gpqa", "mmlu_pro"}
    assert {n for n, b in benchmarks.REGISTRY.items() if b.group == 1} >= group1
    assert {n for n, b in benchmarks.REGISTRY.items() if b.group == 2} == group2
    assert set(HUB) == group1 - {"math500", "minerva", "gsm8k"} | group2


@pytest.mark.parametrize("name,rows", [("gsm8k", 1319), ("math500", 500), ("minerva", 272)])
def test_embedded_sets(name, rows):
    problems = benchmarks.load(name)
    assert len(problems) == rows
    assert all(p.answer and p.problem and p.benchmark == name for p in problems)
    assert len({p.id for p in problems}) == rows


def test_every_hub_loader_reads_its_fixture(eval_hub_mirror):
    spec = json.loads((FIXTURES / "eval_hub_rows.json").read_text())
    for name in HUB:
        problems, left_out = benchmarks.load_counted(name, str(eval_hub_mirror))
        rows = spec[benchmarks.REGISTRY[name].hub_id]["rows"]
        assert len(problems) + sum(left_out.values()) == len(rows), name
        assert len({p.id for p in problems}) == len(problems), name
        for p in problems:
            assert p.benchmark == name and p.problem.strip() and p.answer.strip()
            assert p.answer_type in typing.get_args(benchmarks.AnswerType)


def test_hub_answers_are_normalized(eval_hub_mirror):
    load = lambda name: benchmarks.load_counted(name, str(eval_hub_mirror))  # noqa: E731
    olymp, _ = load("olympiadbench")
    by_id = {p.id: p for p in olymp}
    # final_answer is a list of one string; several answers sit in it with inner dollars
    assert [p.answer for p in olymp[:3]] == ["40", "69, 84", "\\frac{5}{6}"]
    assert by_id["olympiadbench-1664"].multiple and not by_id["olympiadbench-2231"].multiple
    assert by_id["olympiadbench-2990"].answer == "62.5%"
    assert by_id["olympiadbench-2991"].unit == "km/h"
    assert by_id["olympiadbench-2994"].answer == "1.41" and by_id["olympiadbench-2994"].tolerance == (0.01,)  # period
    assert by_id["olympiadbench-1618"].kind == "Tuple" and by_id["olympiadbench-1618"].tolerance == ()
    assert {p.answer_type for p in olymp} == {"olympiadbench"}
    amc, _ = load("amc23")
    assert [p.answer for p in amc] == ["27", "4.5"]  # stored as floats on the hub
    aime, _ = load("aime24")
    assert aime[0].answer == "024" and aime[0].id == "aime24-60"
    theorem, left_out = load("theoremqa")
    assert left_out == {"needs_image": 1}
    assert [(p.answer, p.kind) for p in theorem] == [
        ("11760", "integer"), ("-1.047", "float"), ("True", "bool"), ("(c)", "option"),
        ("[2, 3]", "list of integer"), ("[0.5, 1.25]", "list of float")]
    assert {p.answer_type for p in theorem} == {"theoremqa"}


def test_olympiad_gold_normalization():
    assert benchmarks.olympiad_gold(["$69$,$84$"]) == "69, 84"
    assert benchmarks.olympiad_gold(["$(1,8,19), (2,7,13), (4,5,7)$"]) == "(1,8,19), (2,7,13), (4,5,7)"
    assert benchmarks.olympiad_gold(["$\\angle B E A_{1}=90$,$\\angle A E B_{1}=90$"]) == (
        "\\angle B E A_{1}=90, \\angle A E B_{1}=90")
    assert benchmarks.olympiad_gold(["1,3,5"]) == "1,3,5"
    assert benchmarks.olympiad_gold(["17.5%."]) == "17.5%"
    assert benchmarks.olympiad_gold([]) == ""


def test_every_benchmark_grades_its_own_gold(eval_hub_mirror):
    """The round trip on every benchmark's rows (fixtures for the hub sets, the real files for the
    embedded ones): the gold stated in \\boxed{} grades correct, another answer wrong."""
    from cgd.evaluation import gradecheck

    for name in benchmarks.REGISTRY:
        if name == "math":  # 5,000 problems; MATH-500 is its evaluation subset
            continue
        problems, _ = benchmarks.load_counted(name, str(eval_hub_mirror))
        result = gradecheck.round_trip(problems)
        assert result["as_expected"] == result["problems"] > 0, (name, result["failures"])
        # the authors' rule runs beside ours and reports its own figure
        theirs = result["harness"]
        assert theirs["problems"] == result["problems"] and len(theirs["failures"]) == theirs["problems"] - theirs["as_expected"]


def test_multiple_choice_options_are_lettered(eval_hub_mirror):
    gpqa, _ = benchmarks.load_counted("gpqa", str(eval_hub_mirror))
    for p in gpqa:
        assert p.answer_type == "choice" and p.n_options == 4
        letters = [line[:3] for line in p.problem.splitlines() if line[:1] == "(" and line[2:3] == ")"]
        assert letters == ["(A)", "(B)", "(C)", "(D)"]
    # The correct answer sits at the gold letter, and the order is the same on every load.
    first = gpqa[0]
    assert f"({first.answer}) Photon" in first.problem
    again, _ = benchmarks.load_counted("gpqa", str(eval_hub_mirror))
    assert [p.problem for p in again] == [p.problem for p in gpqa]
    mmlu, _ = benchmarks.load_counted("mmlu_pro", str(eval_hub_mirror))
    # MMLU-Pro pads options to 10 with "N/A"; its official loader drops them (3 to 10 remain)
    assert [(p.answer, p.n_options) for p in mmlu] == [("F", 10), ("B", 4), ("C", 3)]
    assert "(F) 11" in mmlu[0].problem and "(J) 16" in mmlu[0].problem
    assert "N/A" not in mmlu[1].problem and "(E)" not in mmlu[1].problem


def test_a_mirror_without_the_dataset_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder TIGER-Lab/TheoremQA"):
        benchmarks.load_counted("theoremqa", str(tmp_path))


def test_a_hub_benchmark_reads_the_pinned_revision(monkeypatch):
    """eval.hub_revisions reaches datasets.load_dataset, and the read is recorded for provenance."""
    import datasets

    from cgd.runtime import provenance

    calls = []

    def fake_load(path, config=None, split=None, revision=None, **kw):
        calls.append((path, config, split, revision))
        return datasets.Dataset.from_list([{"question_id": 1, "question": "Pick one.", "options": ["x", "y", "N/A"],
                                            "answer": "B", "answer_index": 1, "cot_content": "", "category": "c",
                                            "src": "s"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(provenance, "DATASET_READS", [])
    rev = "3373e0b32277875b8db2aa555a333b78a08477ea"
    problems, _ = benchmarks.load_counted("mmlu_pro", None, rev)
    assert calls == [("TIGER-Lab/MMLU-Pro", None, "test", rev)]
    assert problems[0].n_options == 2
    reads = provenance.collect()["datasets"]
    assert reads[0]["hub_id"] == "TIGER-Lab/MMLU-Pro" and reads[0]["revision"] == rev
    assert reads[0]["from"] == "hub" and reads[0]["rows"] == 1 and reads[0]["fingerprint"]


def test_sample_is_seeded_and_in_benchmark_order():
    problems = benchmarks.load("gsm8k")
    a, b = benchmarks.sample(problems, 10, 3), benchmarks.sample(problems, 10, 3)
    assert a == b and len(a) == 10
    order = [problems.index(p) for p in a]
    assert order == sorted(order)
    assert benchmarks.sample(problems, None, 3) == problems
