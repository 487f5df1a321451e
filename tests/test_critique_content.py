"""The critique-content ablation (the revised paper): the rows each variant trains on, its params,
the sweep step and DVC stage wiring, and the stage-07 table beside the release's numbers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cgd import config as P
from cgd.distill import critique_content as content
from cgd.evaluation import evaluate as evaluation
from cgd.experiments import sweeps
from cgd.grading import labels
from cgd.reporting import critique_content as report
from cgd.reporting import figures, paper, points, tables
from cgd.runtime.io import read_json, read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def _with(raw: dict, **dotted) -> dict:
    return P.apply_overrides(raw, {k.replace("__", "."): v for k, v in dotted.items()})


def _rows(n: int = 8) -> list[dict]:
    rows = []
    for i in range(n):
        verdict = "wrong" if i % 2 else "right"
        rows.append({"id": f"r{i}", "question": f"Q{i}", "student_answer": f"y{i}",
                     "critique": f"Step {i} is checked.\n\nConclusion: {verdict}", "refined_answer": f"\\boxed{{{i}}}",
                     "status": "ok", "in_mixture": True})
    rows[0]["critique"] = rows[2]["critique"] = "Same words.\n\nConclusion: right"  # a teacher repeating itself
    rows.append({**rows[1], "id": "skipped", "status": "refine_failed", "critique": "not trained on"})
    rows.append({**rows[1], "id": "outside", "in_mixture": False, "critique": "left out of the mixture"})
    return rows


# ---------------------------------------------------------------- the rows


@pytest.mark.parametrize("n", [2, 3, 5, 17, 64])
def test_a_derangement_moves_every_row_and_is_a_seeded_permutation(n):
    for seed in range(20):
        order = content.derangement(n, seed)
        assert sorted(order) == list(range(n)) and all(order[i] != i for i in range(n))
    assert content.derangement(n, 3) == content.derangement(n, 3)
    assert len({tuple(content.derangement(64, s)) for s in range(10)}) == 10
    with pytest.raises(ValueError, match="at least 2 rows"):
        content.derangement(1, 0)


def test_irrelevant_gives_each_training_row_another_rows_critique_and_counts_what_that_means():
    rows = _rows()
    out, rep = content.replace(rows, "irrelevant", seed=0)
    trained = [i for i, r in enumerate(rows) if r["status"] == "ok" and r["in_mixture"]]
    assert len(out) == len(rows) and rep["replaced"] == len(trained) == 8 and rep["passed_unchanged"] == 2
    own = {rows[i]["id"]: rows[i]["critique"] for i in trained}
    moved = [out[i]["critique"] for i in trained]
    # each training row's critique is another training row's, every one used once
    assert Counter(moved) == Counter(own.values())
    assert all(out[i]["original_critique"] == rows[i]["critique"] and out[i]["critique_content"] == "irrelevant"
               for i in trained)
    # the two rows holding the same text may swap with each other: counted, not hidden
    same = sum(out[i]["critique"] == rows[i]["critique"] for i in trained)
    assert rep["same_text_as_own"] == same
    assert rep["conclusion_differs"] == sum(labels.conclusion(out[i]["critique"]) != labels.conclusion(rows[i]["critique"])
                                            for i in trained)
    assert out[-2]["critique"] == "not trained on" and out[-1]["critique"] == "left out of the mixture"
    assert "original_critique" not in out[-1]
    # the question, y' and the target stay the row's own
    assert all((out[i]["question"], out[i]["student_answer"], out[i]["refined_answer"]) ==
               (rows[i]["question"], rows[i]["student_answer"], rows[i]["refined_answer"]) for i in range(len(rows)))
    assert content.replace(rows, "irrelevant", seed=0)[0] == out and content.replace(rows, "irrelevant", seed=1)[0] != out


def test_generic_gives_every_training_row_the_files_text_without_a_verdict(tmp_path):
    rows = _rows()
    out, rep = content.replace(rows, "generic", seed=0)
    generic = content.load_generic()
    assert labels.conclusion(generic.text) == "missing" and generic.version == "generic-critique-v1"
    assert generic.source == "cgd/distill/generic_critique.yaml"
    assert [r["critique"] for r in out[:8]] == [generic.text] * 8 and out[-1]["critique"] == "left out of the mixture"
    assert rep["generic_version"] == "generic-critique-v1" and rep["replaced"] == 8
    custom = tmp_path / "g.yaml"
    custom.write_text("text: Look again at every step.\n")
    assert content.load_generic(custom).version.startswith("custom:")
    custom.write_text(yaml.safe_dump({"text": "The steps hold up.\n\nConclusion: right"}))
    with pytest.raises(ValueError, match="concluding 'right'.*remove it"):
        content.load_generic(custom)
    custom.write_text("text: x\nnotes: y\n")
    with pytest.raises(ValueError, match="nothing else"):
        content.load_generic(custom)
    with pytest.raises(ValueError, match="unknown critique-content variant"):
        content.replace(rows, "random", seed=0)


# ---------------------------------------------------------------- params, the sweep step, DVC


@pytest.mark.parametrize("over, match", [
    ({"ablations.critique_content.methods": ["cft"]}, r"'ablations.critique_content.methods' lists cft, which does not read"),
    ({"ablations.critique_content.methods": []}, r"'ablations.critique_content.methods' is empty"),
    ({"ablations.critique_content.variants": ["random"]}, r"'ablations.critique_content.variants"),
    ({"ablations.critique_content.variants": ["generic", "generic"]}, r"lists a value twice"),
    ({"ablations.critique_content.generic_file": "nope.yaml"}, r"'ablations.critique_content.generic_file' is nope.yaml"),
])
def test_params_errors_name_the_key(raw_params, over, match):
    with pytest.raises(P.ParamsError, match=match):
        P.from_dict(P.apply_overrides(raw_params, over), REPO / "dvc.yaml")


def test_off_means_no_check_and_the_demo_runs_both_variants(raw_params):
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml")
    assert cfg.ablations.critique_content.variants == ["irrelevant", "generic"]
    assert P.from_dict(_with(raw_params, ablations__critique_content__variants=[],
                             ablations__critique_content__methods=["cft"]), REPO / "dvc.yaml")


def test_the_step_feeds_training_and_its_report_reaches_the_point(tmp_path, raw_params):
    steps = sweeps.plan(sweeps.ABLATIONS["critique_content"].chain, {"critique_content": "irrelevant", "method": "cgd",
                        "seed": 0}, tmp_path / "p", "params.yaml", raw_params)
    by = {s.name: s.parameters for s in steps}
    assert [s.name for s in steps] == ["critique_content", "05_train", "06_eval"]
    assert by["critique_content"]["in_file"] == "data/04_refine/cgd_data.jsonl"
    assert by["05_train"]["data_file"] == by["critique_content"]["out_file"]
    with pytest.raises(ValueError, match="needs 'critique_content'"):
        sweeps.plan(("critique_content",), {}, tmp_path / "q", "params.yaml", raw_params)

    write_jsonl(tmp_path / "cgd_data.jsonl", _rows())
    rep = sweeps.replace_critiques(str(tmp_path / "cgd_data.jsonl"), str(tmp_path / "out.jsonl"),
                                   str(tmp_path / "m.json"), "params.yaml", {}, "generic")
    assert rep["replaced"] == 8 and read_json(tmp_path / "m.json")["generic_version"] == "generic-critique-v1"
    assert len(list(read_jsonl(tmp_path / "out.jsonl"))) == 10
    with pytest.raises(P.ParamsError, match="lacks 'generic'"):
        sweeps.replace_critiques(str(tmp_path / "cgd_data.jsonl"), str(tmp_path / "o.jsonl"), str(tmp_path / "m.json"),
                                 "params.yaml", {"ablations.critique_content.variants": ["irrelevant"]}, "generic")


def test_the_generic_text_is_part_of_a_points_fingerprint(tmp_path, raw_params):
    chain = sweeps.ABLATIONS["critique_content"].chain
    values = {"critique_content": "generic", "method": "cgd", "seed": 0}
    before = sweeps.point_fingerprint(chain, values, False, raw_params)
    custom = tmp_path / "g.yaml"
    custom.write_text("text: Look again at every step.\n")
    after = sweeps.point_fingerprint(chain, values, False,
                                     _with(raw_params, ablations__critique_content__generic_file=str(custom)))
    assert before != after


def test_the_dvc_stage_runs_one_point_per_variant_method_and_seed(raw_params):
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["ablate_critique_content"]
    assert set(stage["matrix"]) == {"variant", "method", "seed"}
    assert "--ablation critique_content" in stage["cmd"] and "--set critique_content=${item.variant}" in stage["cmd"]
    assert "data/04_refine/cgd_data.jsonl" in stage["deps"] and "cgd/distill" in stage["deps"]
    assert "ablations.critique_content" in stage["params"]
    assert any("data/06_eval/critique_content/" in o for o in stage["outs"])


def test_only_the_current_variants_points_are_read(raw_params):
    cfg = P.from_dict(_with(raw_params, ablations__critique_content__variants=["generic"]), REPO / "dvc.yaml")

    def point(values):
        return {"ablation": "critique_content", "values": values, "overrides": {}, "chain": [], "fingerprint": "", "eval": {}}

    assert points.is_current(point({"critique_content": "generic", "method": "cgd", "seed": 0}), cfg)
    assert not points.is_current(point({"critique_content": "irrelevant", "method": "cgd", "seed": 0}), cfg)
    assert not points.is_current(point({"critique_content": "generic", "method": "cgd", "seed": 9}), cfg)


# ---------------------------------------------------------------- the stage-07 table


def _samples(correct: list[int], bench: str) -> list[dict]:
    return [{"benchmark": bench, "mode": "greedy", "problem_id": f"{bench}/{i}", "correct": bool(c)}
            for i, c in enumerate(correct)]


def _acc(**by_bench) -> dict:
    return {"benchmarks": {b: {"group": 1, "accuracy": {"mean": m, "ci_low": m - 5, "ci_high": m + 5}}
                           for b, m in by_bench.items()}}


def test_the_table_pairs_each_variant_with_a_and_shows_mean_sd_beside_the_release(raw_params):
    cfg = P.from_dict(_with(raw_params, eval__benchmarks={"math500": None, "gsm8k": None}, eval__bootstrap_resamples=200),
                      REPO / "dvc.yaml")
    a = [1, 1, 0, 1, 0, 1, 1, 0]
    b = [0, 1, 0, 0, 0, 1, 0, 0]
    paired = evaluation.compare_runs({0: _samples(b, "math500") + _samples(b, "gsm8k")},
                                     {0: _samples(a, "math500") + _samples(a, "gsm8k")}, cfg.eval, cfg.seed)["pooled"]
    main = {"cgd-seed0": _acc(math500=60.0, gsm8k=62.5), "cgd-seed1": _acc(math500=64.0, gsm8k=62.5)}
    variants = {"irrelevant": {"cgd-seed0": _acc(math500=20.0, gsm8k=25.0), "cgd-seed1": _acc(math500=30.0, gsm8k=25.0)}}
    columns, rows = report.table(["cgd"], main, variants, {"irrelevant": {"cgd": paired}}, ["gsm8k", "math500"],
                                 paper.load(), comparable=False)
    assert columns == ["math500", "gsm8k"]  # the release's benchmarks first
    assert list(rows) == ["cgd@content=relevant", "cgd@content=irrelevant", "delta_cgd@content=irrelevant"]
    a_cell = rows["cgd@content=relevant"]["math500"]
    assert (a_cell.run, a_cell.sd, a_cell.paper, a_cell.paper_sd) == (62.0, 2.8, 55.5, 0.6)
    assert a_cell.text() == "62.0 ± 2.8 / ref. 55.5 ± 0.6"
    assert rows["cgd@content=irrelevant"]["math500"].text() == "25.0 ± 7.1 / ref. 53.3 ± 0.5"
    delta = rows["delta_cgd@content=irrelevant"]["math500"]
    assert delta.run == -37.5 and delta.p_value == paired["math500"]["p_value"] and delta.paper == -2.2
    assert rows["cgd@content=relevant"]["gsm8k"].paper is None  # the release reports no GSM8K here
    assert tables.method_title("delta_cgd@content=irrelevant") == \
        "Δ CGD, B − A: specific but irrelevant − relevant (paired)"
    fig = figures.critique_content_plot(rows, ["cgd"], ["irrelevant"], "test")
    assert figures.empty_panels(fig) == []
    one = report.table(["cgd"], {"cgd-seed0": _acc(math500=60.0)}, {}, {}, ["math500"], paper.load(), True)[1]
    assert one["cgd@content=relevant"]["math500"].text() == "60.0 [55.0, 65.0] / 55.5 ± 0.6 (+4.5)"  # one seed: its CI


def test_gather_reads_the_points_and_their_data_reports(tmp_path, raw_params):
    cfg = P.from_dict(_with(raw_params, eval__benchmarks={"gsm8k": None}, eval__bootstrap_resamples=100,
                            train__seeds=[0]), REPO / "dvc.yaml")
    samples = tmp_path / "06_eval"
    write_jsonl(samples / "cgd-seed0" / "samples.jsonl", _samples([1, 1, 1, 0], "gsm8k"))
    write_jsonl(tmp_path / "generic.jsonl", _samples([1, 0, 0, 0], "gsm8k"))
    pt = {"ablation": "critique_content", "values": {"critique_content": "generic", "method": "cgd", "seed": 0},
          "overrides": {}, "chain": [], "fingerprint": "x",
          "critique_content": {"variant": "generic", "replaced": 4, "generic_version": "generic-critique-v1",
                               "generic_source": "cgd/distill/generic_critique.yaml"},
          "eval": {"06_eval": {**_acc(gsm8k=25.0), "samples": str(tmp_path / "generic.jsonl")}}}
    columns, rows, variants, data = report.gather([pt], {"base": _acc(gsm8k=1.0), "cgd-seed0": _acc(gsm8k=75.0)},
                                                  str(samples), cfg, paper.load(), False)
    assert variants == ["generic"] and rows["delta_cgd@content=generic"]["gsm8k"].run == -50.0
    assert "generic-critique-v1" in report.caption(variants, data)
    assert report.gather([], {}, str(samples), cfg, paper.load(), False) is None
    # a point whose answers are not in the workspace (metrics in git, samples a DVC output not
    # pulled): its means still show, its paired difference is not run
    (tmp_path / "generic.jsonl").unlink()
    _, rows, _, _ = report.gather([pt], {"base": _acc(gsm8k=1.0), "cgd-seed0": _acc(gsm8k=75.0)},
                                  str(samples), cfg, paper.load(), False)
    assert rows["delta_cgd@content=generic"]["gsm8k"].run is None
    assert rows["cgd@content=generic"]["gsm8k"].run == 25.0


def test_the_release_numbers_are_transcribed():
    values = report.paper_values(paper.load())
    assert values[("relevant", "amc23")] == (31.7, 1.4) and values[("irrelevant", "aime24")] == (6.7, 0.0)
    assert values[("generic", "math500")] == (54.0, 0.4) and len(values) == 9
    assert json.dumps(sorted(report.CONDITIONS)) == json.dumps(sorted(["relevant", "irrelevant", "generic"]))
