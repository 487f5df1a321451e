"""Paper tables from stage-06 metrics: every cell equals the metrics it comes from."""

import pandas as pd
import pytest

from cgd.reporting import paper, tables


def _metrics(acc: dict[str, float], ci: float = 5.0) -> dict:
    return {"benchmarks": {b: {"accuracy": {"n": 20, "mean": v, "ci_low": v - ci, "ci_high": v + ci}}
                           for b, v in acc.items()}}


FULL = {"math500": 20.0, "minerva": 10.0, "gsm8k": 40.0, "olympiadbench": 5.0, "amc23": 25.0}


@pytest.fixture
def metrics():
    return {
        "base": _metrics({"gsm8k": 10.0, "math500": 20.0}),
        "cft-seed0": _metrics({"gsm8k": 12.0, "math500": 18.0}),
        "cgd-seed0": _metrics({**FULL, "gsm8k": 30.0, "math500": 24.0}),
        "cgd-seed1": _metrics({**FULL, "gsm8k": 34.0, "math500": 26.0}),
    }


def test_table1_cells_equal_their_metrics(metrics):
    columns, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    assert columns[:6] == ["math500", "minerva", "gsm8k", "olympiadbench", "amc23", "avg_group1"]
    base = rows["base"]["gsm8k"]
    assert (base.run, base.ci_low, base.ci_high) == (10.0, 5.0, 15.0)  # one run: its bootstrap CI
    assert base.paper == 85.3 and base.diff == -75.3
    cgd = rows["cgd"]["gsm8k"]
    assert cgd.run == 32.0 and cgd.ci_low < 32.0 < cgd.ci_high  # two seeds: mean, t-interval
    # Avg. over all five Group-1 benchmarks, mean over seeds: (18.8 + 20.0) / 2
    assert rows["cgd"]["avg_group1"].run == 19.4
    assert rows["base"]["avg_group1"].run is None  # base ran 2 of the 5: no Avg.
    assert rows["delta_cgd_minus_cft"]["gsm8k"].run == 20.0
    assert rows["delta_cgd_minus_cft"]["gsm8k"].paper == 0.9


def test_missing_runs_and_benchmarks_read_not_run(metrics):
    columns, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    assert rows["sft"]["gsm8k"].run is None and rows["sft"]["gsm8k"].paper == 80.7
    assert rows["base"]["amc23"].run is None and rows["base"]["avg_group2"].run is None
    frame = tables.to_frame(columns, rows)
    assert frame.loc[frame.Method == "+ SFT", "GSM8K"].item() == "not run / 80.7"
    assert frame.loc[frame.Method == "Base", "GSM8K"].item() == "10.0 [5.0, 15.0] / 85.3 (-75.3)"


def test_written_files_hold_the_same_numbers(metrics, tmp_path):
    columns, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    paths = tables.write("table1", columns, rows, tmp_path)
    assert sorted(p.suffix for p in paths) == [".csv", ".md", ".tex"]
    csv = pd.read_csv(tmp_path / "table1.csv")
    row = csv[(csv.method == "cft") & (csv.column == "math500")].iloc[0]
    assert (row["run"], row["paper"], row["diff"]) == (18.0, 51.8, -33.8)
    assert "not run" in (tmp_path / "table1.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "table1.tex").read_text()


def test_the_same_layout_serves_tables_6_and_7(metrics):
    assert tables.main_table("webinstruct", "LLaMA3.1-8B Instruct") == "table1"
    assert tables.main_table("metamathqa", "LLaMA3.1-8B Instruct") == "table6"
    assert tables.main_table("webinstruct", "OLMo-2-1124-7B-Instruct") == "table7"
    _, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct", "table6")
    assert rows["cgd"]["math500"].paper == 59.0  # Table 6 (MetaMathQA), not Table 1's 54.2
    _, rows = tables.table1(metrics, paper.load(), "OLMo-2-1124-7B-Instruct", "table7")
    assert rows["cgd"]["amc23"].paper == 20.0 and rows["distilled_sft"]["amc23"].paper is None


def test_the_delta_row_carries_the_paired_ci_and_mcnemar_p(metrics):
    paired = {"gsm8k": {"n": 20, "diff": 18.0, "ci_low": 5.0, "ci_high": 30.0, "p_value": 0.012},
              "math500": {"n": 20, "diff": 7.0, "ci_low": None, "ci_high": None, "p_value": None}}
    _, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct", paired=paired)
    delta = rows["delta_cgd_minus_cft"]["gsm8k"]
    assert (delta.run, delta.ci_low, delta.ci_high, delta.p_value) == (18.0, 5.0, 30.0, 0.012)
    assert delta.text() == "18.0 [5.0, 30.0] p=0.012 / 0.9 (+17.1)"
    assert rows["delta_cgd_minus_cft"]["minerva"].run is None  # CFT never ran it: no difference


def test_a_difference_is_printed_only_beside_the_papers_own_student(metrics):
    assert tables.compares_with_paper("meta-llama/Llama-3.1-8B-Instruct", "LLaMA3.1-8B Instruct")
    assert tables.compares_with_paper("/mirror/meta-llama/Llama-3.1-8B-Instruct/", "LLaMA3.1-8B Instruct")
    assert not tables.compares_with_paper("models/smollm2-135m-instruct", "LLaMA3.1-8B Instruct")
    assert not tables.compares_with_paper("meta-llama/Llama-3.1-8B", "LLaMA3.1-8B Instruct")  # base vs instruct
    _, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    assert rows["base"]["gsm8k"].text() == "10.0 [5.0, 15.0] / 85.3 (-75.3)"
    ref = tables.as_reference(rows)["base"]["gsm8k"]
    assert ref.diff is None and ref.text() == "10.0 [5.0, 15.0] / ref. 85.3"
    long = tables.to_long(["gsm8k"], tables.as_reference(rows))
    assert long["diff"].isna().all() and long["paper_is_reference"].all()


def test_our_cft_and_the_papers_cft_star_are_two_rows(metrics):
    """Table 2's CFT row in the paper is CFT* (GPT-4o critiques): it sits beside a cft_gpt4o run,
    never beside ours; Table 1 lists CFT* as its own row where the paper reports it."""
    general = {"general": {"leaderboard_ifeval": {"value": 50.0, "stderr": 1.0}}}
    runs = {**metrics, "cft-seed0": {**metrics["cft-seed0"], **general}}
    _, rows = tables.table2(runs, paper.load(), "LLaMA3.1-8B Instruct")
    assert rows["cft"]["ifeval"].run == 50.0 and rows["cft"]["ifeval"].paper is None
    assert rows["cft"]["ifeval"].diff is None
    assert rows["cft_gpt4o"]["ifeval"].run is None and rows["cft_gpt4o"]["ifeval"].paper is not None
    _, t1 = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    assert list(t1)[:6] == ["base", "sft", "distilled_sft", "cft", "cft_gpt4o", "cgd"]
    assert t1["cft_gpt4o"]["math500"].run is None and t1["cft_gpt4o"]["math500"].paper is not None
    _, s1 = tables.table1(metrics, paper.load(), "S1.1-3B")
    assert "cft_gpt4o" not in s1  # the paper has no CFT* for S1.1 and none was run
    assert tables.method_title("cft_gpt4o").startswith("+ CFT*") and tables.method_title("cft") != "+ CFT*"


def test_table3_sets_cgd_on_the_base_model_beside_simplerl_zero():
    runs = {"base": _metrics({"math500": 4.0, "minerva": 2.0, "olympiadbench": 1.0, "amc23": 0.0, "aime24": 0.0}),
            "cgd-seed0": _metrics({"math500": 30.0, "minerva": 13.0, "olympiadbench": 7.0, "amc23": 10.0,
                                   "aime24": 0.0})}
    columns, rows = tables.table3(runs, paper.load())
    assert columns == ["math500", "minerva", "olympiadbench", "amc23", "aime24", "avg"]
    assert rows["simplerl_zero"]["math500"].text() == "paper: 23.0"  # a reference row, never a run
    assert rows["cgd"]["math500"].text() == "30.0 [25.0, 35.0] / 29.4 (+0.6)"
    assert rows["cgd"]["avg"].run == 12.0 and rows["cgd"]["avg"].paper == 11.9
    assert rows["base"]["math500"].paper is None
    assert tables.main_table("webinstruct", "LLaMA3.1-8B") == "table3"


def test_table5_sets_this_runs_hyperparameters_beside_the_papers():
    from pathlib import Path

    import yaml

    from cgd.config.profiles import load_profile

    repo = Path(__file__).resolve().parents[1]
    paper_train = load_profile(repo / "configs/profiles/llama8b-webinstruct.yaml")["train"]
    t5 = tables.table5(paper_train, paper.load())
    assert list(t5["hyperparameter"]) == ["batch_size", "learning_rate", "max_length", "epochs", "warmup_ratio",
                                          "optimizer", "scheduler"]
    assert t5["same"].all()  # the paper profile trains with Table 5
    demo = yaml.safe_load((repo / "params.yaml").read_text())["train"]
    t5 = tables.table5(demo, paper.load())
    t5 = t5.set_index("hyperparameter")
    assert not t5["same"].all() and float(t5.loc["learning_rate", "this run"]) == demo["lr"]
    assert t5.loc["batch_size", "paper"] == "64" and t5.loc["learning_rate", "paper"] == "1e-06"


# ---------------------------------------------------------------- which rule graded a cell (issue 39)


def test_cells_name_the_rule_that_graded_them(metrics):
    columns, rows = tables.table1(metrics, paper.load(), "LLaMA3.1-8B Instruct")
    ruled = tables.with_grader(rows, "harness")
    assert ruled["base"]["gsm8k"].text() == "10.0 [5.0, 15.0] ⟨harness⟩ / 85.3 (-75.3)"
    assert ruled["base"]["minerva"].text().startswith(tables.NOT_RUN + " /")  # nothing graded, no rule
    long = tables.to_long(columns, ruled)
    assert set(long[long.run.notna()].grader) == {"harness"} and long[long.run.isna()].grader.isna().all()


def _sample(run_bench, pid, ours, theirs, reason="correct"):
    return {"benchmark": run_bench, "problem_id": pid, "mode": "greedy", "gold": "1", "output": "x" * 400,
            "verdicts": {"committed": {"correct": ours, "extracted": "1" if ours else None,
                                       "reason": reason if ours else "no_final_answer"},
                         "harness": {"correct": theirs, "extracted": "1", "reason": "correct" if theirs else "wrong"}}}


def test_the_grader_table_is_a_recount_of_the_samples():
    from cgd.reporting import graders

    samples = {"sft-seed0": [_sample("gsm8k", "a", True, True), _sample("gsm8k", "b", False, True),
                             _sample("math500", "c", False, False), _sample("math500", "d", True, False),
                             {**_sample("math500", "e", True, True), "mode": "sampled"}],  # pass@k: not counted
               "base": [_sample("gsm8k", "a", False, True)]}
    table = graders.grader_table(samples).set_index(["run", "benchmark"])
    sft = table.loc[("sft-seed0", "gsm8k")]
    assert (sft.samples, sft.committed_correct, sft.harness_correct, sft.disagreements) == (2, 1, 2, 1)
    assert (sft.committed_accuracy, sft.harness_accuracy, sft.only_harness) == (50.0, 100.0, 1)
    pooled = table.loc[(graders.ALL_RUNS, "gsm8k")]
    assert (pooled.samples, pooled.committed_correct, pooled.harness_correct, pooled.disagreements) == (3, 1, 3, 2)
    assert table.loc[("sft-seed0", "math500")].only_committed == 1
    listing = graders.disagreements(samples)
    assert sorted(zip(listing.run, listing.problem_id)) == [("base", "a"), ("sft-seed0", "b"), ("sft-seed0", "d")]
    assert listing.output_end.str.len().max() == graders.TAIL_CHARS


def test_the_rule_of_the_runs_read():
    from cgd.reporting import graders

    one = {"benchmarks": {"gsm8k": {"grader": "committed"}}}
    other = {"benchmarks": {"gsm8k": {"grader": "harness"}}}
    assert graders.rule_of([one, one]) == "committed"
    assert graders.rule_of([one, other]) == "mixed (committed, harness)"
    assert graders.rule_of([{"benchmarks": {"gsm8k": {}}}]) == "unrecorded"
    assert graders.rule_of([]) is None


def test_the_reports_rule_reads_every_evaluation_a_point_holds(tmp_path):
    from cgd.reporting.build import Report

    graded = {"benchmarks": {"gsm8k": {"grader": "committed"}}}
    points = [{"ablation": "flaw_source", "eval": {}},  # a point whose evaluation has not run yet
              {"ablation": "lr", "eval": {"x": graded}}]
    report = Report(None, tmp_path, {"base": graded}, [], points, [])
    assert report.rule == "committed"


def test_the_cross_family_table_sets_each_teacher_beside_the_release():
    """The release's Qwen2.5-Math-7B table: base, CFT on GPT-4o's and on the teacher's critiques, CGD per
    teacher (the profile's own and each teacher point's), five benchmarks and their plain mean."""
    from cgd.reporting import cross_family, paper

    def acc(**by_bench):
        return {"benchmarks": {b: {"group": 1, "accuracy": {"mean": m, "ci_low": m - 5, "ci_high": m + 5}}
                               for b, m in by_bench.items()}}

    five = dict(math500=60.0, minerva=20.0, olympiadbench=30.0, amc23=40.0, aime24=10.0)
    metrics = {"base": acc(**five), "cft-seed0": acc(**five), "cft_gpt4o-seed0": acc(**five),
               "cgd-seed0": acc(**{**five, "amc23": 50.0})}
    by_teacher = {"simplescaling/s1.1-32B": {"cgd-seed0": metrics["cgd-seed0"]},
                  "claude-3-7-sonnet-20250219": {"cgd-seed0": acc(**five)},
                  "org/another-teacher": {"cgd-seed0": acc(math500=1.0)}}
    columns, rows = cross_family.table(metrics, by_teacher, "simplescaling/s1.1-32B", paper.load(), "Qwen2.5-Math-7B")
    assert columns == ["math500", "minerva", "olympiadbench", "amc23", "aime24", "avg"]
    assert list(rows) == ["base", "cft_gpt4o", "cft@simplescaling/s1.1-32B", "cgd@simplescaling/s1.1-32B",
                          "cgd@claude-3-7-sonnet-20250219", "cgd@org/another-teacher"]
    assert rows["cgd@simplescaling/s1.1-32B"]["amc23"].run == 50.0
    assert rows["cgd@simplescaling/s1.1-32B"]["avg"].run == 34.0  # (60 + 20 + 30 + 50 + 10) / 5
    assert rows["cgd@simplescaling/s1.1-32B"]["amc23"].paper == 62.5
    assert rows["cgd@claude-3-7-sonnet-20250219"]["amc23"].paper == 67.5
    assert rows["cft@simplescaling/s1.1-32B"]["avg"].paper == 46.9 and rows["cft_gpt4o"]["math500"].paper == 79.2
    assert rows["base"]["aime24"].paper == 10.0
    local = {"/models/s1.1-32B/": by_teacher["simplescaling/s1.1-32B"]}  # a local copy named alike
    _, rows_local = cross_family.table(metrics, local, "/models/s1.1-32B/", paper.load(), "Qwen2.5-Math-7B")
    assert rows_local["cgd@/models/s1.1-32B/"]["amc23"].paper == 62.5
    # a teacher the release does not name: no reference; a row missing a benchmark: no Avg.
    assert rows["cgd@org/another-teacher"]["math500"].paper is None
    assert rows["cgd@org/another-teacher"]["avg"].run is None
    # beside another student the release's numbers are not this student's
    _, other = cross_family.table(metrics, by_teacher, "simplescaling/s1.1-32B", paper.load(), "S1.1-3B")
    assert all(c.paper is None for cells in other.values() for c in cells.values())


def test_every_table2_column_has_a_title():
    from cgd.reporting import tables

    assert [tables.column_title(c) for c in tables.GENERAL] == ["IFEval", "MUSR", "TruthfulQA", "BBH", "HumanEval"]
