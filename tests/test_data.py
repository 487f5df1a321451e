import json
from pathlib import Path

import pytest

from cgd import config as P
from cgd.data import benchmarks
from cgd.data import sampling as data

REPO = Path(__file__).resolve().parents[1]


def _cfg(raw_params, **data_overrides):
    raw_params["data"].update(data_overrides)
    return P.from_dict(raw_params, REPO / "dvc.yaml").data


@pytest.fixture(scope="module")
def index():
    return data.build_index(["gsm8k", "math500", "minerva", "math"], 8)


def test_webinstruct_hub_loader_on_fixture(raw_params, webinstruct_hub, index):
    cfg = _cfg(raw_params, source="webinstruct", hub_id=str(webinstruct_hub), require_final_answer=False)
    report = data.SampleReport("webinstruct")
    pool, dropped = data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.read == 11
    assert report.malformed_by_reason == {"empty_solution": 1, "empty_question": 1, "question_too_short": 1}
    assert report.duplicate == 1
    assert report.contaminated_by_benchmark == {"math500": 1, "gsm8k": 1}
    assert [e.id for e in pool] == [f"webinstruct-{i}" for i in (1001, 1002, 1003, 1004, 1005)]
    by_id = {e.id: e for e in pool}
    assert by_id["webinstruct-1002"].reference_answer == "3x^2\\sin x + x^3\\cos x"
    assert by_id["webinstruct-1001"].reference_answer == "2"
    assert by_id["webinstruct-1003"].reference_answer is None  # kept: final answer not required
    assert len(dropped) == report.read - report.clean
    assert {d["reason"] for d in dropped} == {"malformed", "duplicate", "contaminated"}


def test_require_final_answer_counts_rows_without_one(raw_params, webinstruct_hub, index):
    cfg = _cfg(raw_params, source="webinstruct", hub_id=str(webinstruct_hub), require_final_answer=True)
    report = data.SampleReport("webinstruct")
    data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.malformed_by_reason["no_final_answer"] == 1


def test_metamathqa_hub_loader_on_fixture(raw_params, metamathqa_hub, index):
    cfg = _cfg(raw_params, source="metamathqa", hub_id=str(metamathqa_hub), require_final_answer=True)
    report = data.SampleReport("metamathqa")
    pool, _ = data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.read == 7 and report.duplicate == 1
    assert report.malformed_by_reason == {"no_final_answer": 1}
    # GSM-derived rows end "#### 36\nThe answer is: 36": the answer is the number, not the two lines
    assert [e.reference_answer for e in pool] == ["36", "11", "12", "\\sqrt{5}", "752"]
    assert pool[0].id == "metamathqa-0" and pool[0].source == "metamathqa"


def test_embedded_gsm8k_pool(raw_params, index):
    cfg = _cfg(raw_params)
    report = data.SampleReport("gsm8k")
    pool, _ = data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.read == 7473 and report.malformed == 0
    assert report.contaminated_by_benchmark["gsm8k"] > 0  # test-set phrasing does leak into train
    assert all(e.reference_answer for e in pool)
    assert all("<<" not in e.reference_solution for e in pool)


def test_hub_id_rejected_for_embedded_source(raw_params):
    cfg = _cfg(raw_params, hub_id="openai/gsm8k")
    with pytest.raises(ValueError, match="data.hub_id"):
        next(data.load_pool(cfg))


def _pool(n):
    return [data.Example(f"id-{i}", f"question {i}", "s", "1", "t") for i in range(n)]


def test_sampling_is_deterministic_and_seeded():
    def draw(seed):
        report = data.SampleReport("t", read=50, clean=50)
        return [e.id for e in data.sample(_pool(50), 10, seed, report)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    ids = draw(1)
    assert ids == sorted(ids, key=lambda s: int(s.split("-")[1]))  # kept in pool order


def test_sample_all_and_too_many():
    report = data.SampleReport("t", read=5, clean=5)
    assert len(data.sample(_pool(5), None, 0, report)) == 5 and report.kept == 5
    with pytest.raises(ValueError, match="data.n_train = 6"):
        data.sample(_pool(5), 6, 0, data.SampleReport("t", read=5, clean=5))


def test_report_must_add_up():
    with pytest.raises(AssertionError):
        data.SampleReport("t", read=10, clean=5, duplicate=1).check()


@pytest.mark.parametrize("name, rows, answer_type", [
    ("gsm8k", 1319, "number"), ("math500", 500, "math"), ("minerva", 272, "math"), ("math", 5000, "math"),
])
def test_embedded_benchmarks(name, rows, answer_type):
    problems = benchmarks.load(name)
    assert len(problems) == rows and len({p.id for p in problems}) == rows
    assert all(p.problem and p.answer and p.answer_type == answer_type for p in problems)


def test_fixture_rows_follow_the_real_hub_schema():
    web = json.loads((REPO / "tests/fixtures/webinstructsub_rows.json").read_text())
    assert all(set(r) == {"orig_question", "orig_answer", "question", "answer", "source", "index"} for r in web)
    meta = json.loads((REPO / "tests/fixtures/metamathqa_rows.json").read_text())
    assert all(set(r) == {"type", "query", "original_question", "response"} for r in meta)
    cft = json.loads((REPO / "tests/fixtures/webinstruct_cft_rows.json").read_text())
    assert all(set(r) == {"instruction", "input", "output"} for r in cft)
    # the real rows: the request alone in `instruction`, the question and solution in `input`
    assert {r["instruction"] for r in cft} == {"Please critique whether the following solution to the question is correct."}
    omi = json.loads((REPO / "tests/fixtures/openmathinstruct2_rows.json").read_text())
    assert all(set(r) == {"problem", "generated_solution", "expected_answer", "problem_source"} for r in omi)


def test_openmathinstruct2_hub_loader_on_fixture(raw_params, openmathinstruct2_hub, index):
    """The diagnostic source (paper Appendix C): its split train_1M in the hub's layout; the final
    answer comes from expected_answer, and rows are dropped and counted like any pool's."""
    cfg = _cfg(raw_params, source="openmathinstruct2", hub_id=str(openmathinstruct2_hub), split="train_1M")
    report = data.SampleReport("openmathinstruct2")
    pool, dropped = data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.read == 9
    assert report.malformed_by_reason == {"empty_solution": 1}
    assert report.duplicate == 1 and report.contaminated_by_benchmark == {"gsm8k": 1}
    assert [e.id for e in pool] == [f"openmathinstruct2-{i}" for i in (0, 1, 2, 4, 7, 8)]
    assert [e.reference_answer for e in pool] == ["21", "6", "42", "420", "1", "34"]
    assert all(e.source == "openmathinstruct2" for e in pool)


def test_a_held_out_set_shares_no_question_with_the_sample(raw_params, openmathinstruct2_hub, index):
    """The diagnostic sample leaves out every training question (up to case and punctuation),
    counted under held_out so the report still adds up."""
    cfg = _cfg(raw_params, source="openmathinstruct2", hub_id=str(openmathinstruct2_hub), split="train_1M")
    training = [{"id": "webinstruct-7", "question": "a train travels 240 miles in 4 hours; at the same speed, "
                                                    "how many miles does it travel in 7 hours"}]
    report = data.SampleReport("openmathinstruct2")
    pool, dropped = data.clean_pool(data.load_pool(cfg), cfg, index, report, data.holdout_keys(training))
    assert report.held_out == 1 and "openmathinstruct2-4" not in {e.id for e in pool}
    assert {"position": 4, "id": "openmathinstruct2-4", "reason": "held_out",
            "detail": "same question as webinstruct-7"} in dropped
    data.sample(pool, 3, 0, report)  # checks read = malformed + duplicate + contaminated + held_out + clean


def test_a_local_hub_folder_is_read_afresh(raw_params, tmp_path, openmathinstruct2_hub):
    """datasets caches a folder by the dataset's name: two mirrors of the same name (or one edited)
    must each give their own rows, not the rows cached from the first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen = []
    for version in ("first", "second"):
        root = tmp_path / version / "nvidia" / "OpenMathInstruct-2"
        (root / "data").mkdir(parents=True)
        row = {"problem": f"The {version} mirror asks: what is 2 + 3?", "generated_solution": "It is \\boxed{5}.",
               "expected_answer": "5", "problem_source": "augmented_math"}
        pq.write_table(pa.Table.from_pylist([row]), root / "data" / "train_1M-00000-of-00001.parquet")
        (root / "README.md").write_text((openmathinstruct2_hub / "README.md").read_text())  # the card's configs
        cfg = _cfg(raw_params, source="openmathinstruct2", hub_id=str(root), split="train_1M")
        seen.append([r["problem"] for r in data.load_pool(cfg)])
    assert seen == [["The first mirror asks: what is 2 + 3?"], ["The second mirror asks: what is 2 + 3?"]]


def test_webinstruct_cft_rows_become_cft_star_records(webinstruct_cft_hub, index):
    """CFT*: WebInstruct-CFT's rows (subset WebInstruct-CFT-50K, fixture in the hub layout) as stage-04
    rows; the CFT record built from each learns GPT-4o's critique, and every dropped row is counted."""
    from cgd.training import records

    report = data.CftReport("webinstruct_cft")
    rows = data.cft_rows(data.load_cft_critiques(str(webinstruct_cft_hub), "WebInstruct-CFT-50K", "train"),
                         index, None, 0, report)
    assert report.read == 7 and report.duplicate == 1 and report.contaminated_by_benchmark == {"gsm8k": 1}
    assert report.malformed_by_reason == {"no_solution_section": 1, "empty_critique": 1}
    assert report.clean == report.kept == 3 and report.conclusions == {"right": 2, "wrong": 1}
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"webinstruct-cft-0", "webinstruct-cft-1", "webinstruct-cft-2"}
    moles = by_id["webinstruct-cft-2"]  # no "Question:" header: the text before "Solution:" is the question
    assert moles["question"] == "How many moles of oxygen gas are in 64 grams of O2?"
    assert moles["student_answer"] == "The molar mass of O2 is 32 g/mol, so 64 / 32 = 2 mol."
    assert moles["critique"].endswith("Critique Conclusion: correct") and moles["conclusion"] == "right"
    for r in rows:  # what CFT* learns: the critique without its header and end marker
        assert not r["critique"].startswith("Critique:") and "[END]" not in r["critique"]
        assert "Please critique" not in r["question"] and not r["question"].startswith("Question:")
    recs, build = records.build(rows, "cft_gpt4o", records.templates())
    assert build["records"] == 3
    for rec, row in zip(recs, rows):
        assert rec["completion"][0]["content"] == row["critique"]
        assert row["question"] in rec["prompt"][-1]["content"] and row["student_answer"] in rec["prompt"][-1]["content"]
    assert recs[1]["completion"][0]["content"].endswith("Conclusion: wrong")
    picked = data.cft_rows(data.load_cft_critiques(str(webinstruct_cft_hub), "WebInstruct-CFT-50K", "train"),
                           index, 2, 0, data.CftReport("webinstruct_cft"))
    assert len(picked) == 2 and {r["id"] for r in picked} <= set(by_id)


@pytest.mark.parametrize("row,expected", [
    ({"instruction": "Please critique whether the following solution to the question is correct.",
      "input": "Question:\nWhat is 2 + 2?\n\nSolution:\n2 + 2 = 4.", "output": "Critique:\nFine.\n\nConclusion: right [END]"},
     ("What is 2 + 2?", "2 + 2 = 4.", "Fine.\n\nConclusion: right")),
    ({"instruction": "Please critique whether the following solution to the question is correct.\n\nQuestion:\n"
                     "What is 2 + 2?\n\nSolution:\n5", "input": "", "output": "Off by one.\nConclusion: wrong [END]"},
     ("What is 2 + 2?", "5", "Off by one.\nConclusion: wrong")),
    ({"instruction": "Please critique whether the following solution to the question is correct.",
      "input": "What is 2 + 2?\n\nSolution:\n4", "output": "Right.\n\nCritique Conclusion: correct\n\n[END]"},
     ("What is 2 + 2?", "4", "Right.\n\nCritique Conclusion: correct")),
    ({"instruction": "Please critique whether the following solution to the question is correct.",
      "input": "Question:\nWhat is 2 + 2?", "output": "Conclusion: wrong [END]"}, "no_solution_section"),
    ({"instruction": "Please critique whether the following solution to the question is correct.",
      "input": "Question:\n\nSolution:\n4", "output": "x"}, "empty_question"),
    ({"instruction": "Please critique whether the following solution to the question is correct.",
      "input": "Question:\nWhat is 2 + 2?\n\nSolution:\n4", "output": "[END]"}, "empty_critique"),
])
def test_webinstruct_cft_row_variants(row, expected):
    """Every layout the real WebInstruct-CFT rows use parses; the verdict reads from each ending."""
    from cgd.grading import labels

    assert data.parse_cft_row(row) == expected
    if isinstance(expected, tuple):
        assert labels.conclusion(expected[2]) == ("wrong" if "wrong" in expected[2] else "right")


def test_the_cft_data_stage_reads_webinstruct_cft_only_for_cft_star(raw_params, webinstruct_cft_hub, tmp_path,
                                                                     tiny_model):
    import yaml

    from cgd.__main__ import main
    from cgd.runtime.io import read_json, read_jsonl
    from cgd.training import train

    def run(methods):
        raw = yaml.safe_load(yaml.safe_dump(raw_params))
        raw["train"]["methods"] = methods
        raw["webinstruct_cft"]["hub_id"] = str(webinstruct_cft_hub)
        # a clean clone has no converted model, and params outside the repo see no dvc.yaml making one
        raw["student"]["model"] = raw["teacher"]["model"] = str(tiny_model)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        assert main(["cft-data", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "cft.jsonl"),
                     "--metrics", str(tmp_path / "m.json")]) == 0
        return list(read_jsonl(tmp_path / "cft.jsonl")), read_json(tmp_path / "m.json")

    rows, report = run(["cft", "cgd"])
    assert rows == [] and report["off"] and report["kept"] == 0
    rows, report = run(["cft", "cgd", "cft_gpt4o"])
    assert len(rows) == report["kept"] == 3 and report["contaminated_by_benchmark"] == {"gsm8k": 1}
    assert train.data_for("cft_gpt4o", "data/04_refine/cgd_data.jsonl") == train.CFT_DATA
    assert train.data_for("cft", "data/04_refine/cgd_data.jsonl") == "data/04_refine/cgd_data.jsonl"
