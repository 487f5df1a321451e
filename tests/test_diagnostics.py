"""Appendix C probes on the tiny model: each quantity checked against an explicit computation."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cgd.evaluation import diagnostics as D
from cgd.reporting import appendix_c
from tests.test_generation import KEY, chat_server  # noqa: F401  (a fixture: the fake OpenAI server)

ROW = {"id": "r1", "question": "Tom has 3 apples and buys 4 more. How many apples?",
       "student_answer": "3 + 4 = 8, so \\boxed{8}", "critique": "The sum is wrong: 3 + 4 = 7.\n\nConclusion: wrong",
       "refined_answer": "3 + 4 = 7, so Tom has \\boxed{7} apples."}


@pytest.fixture(scope="module")
def tiny(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    return model, tok


def test_entropy_of_hand_built_distributions():
    assert D.entropy(torch.zeros(4)) == pytest.approx(np.log(4))
    assert D.entropy(torch.tensor([0.0, -1e4, -1e4])) == pytest.approx(0.0, abs=1e-6)
    p = np.array([0.5, 0.25, 0.25])
    assert D.entropy(torch.tensor(np.log(p))) == pytest.approx(-(p * np.log(p)).sum())


def test_spans_are_exactly_each_sections_tokens(tiny):
    _, tok = tiny
    rendered = D.render_row(tok, ROW)
    for k, name in enumerate(("problem", "student_answer", "critique")):
        text = tok.decode([i for i, s in zip(rendered.ids, rendered.section) if s == k])
        field = {"problem": ROW["question"], "student_answer": ROW["student_answer"],
                 "critique": ROW["critique"]}[name]
        assert text.strip() == field.strip()
    other = tok.decode([i for i, s in zip(rendered.ids, rendered.section) if s == 3])
    assert "Question:" in other and "Critique:" in other  # labels and template are "other"


def test_first_token_entropy_is_the_entropy_after_the_prompt(tiny):
    model, tok = tiny
    ids = torch.tensor([D.render_row(tok, ROW).ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    p = torch.softmax(logits, -1)
    assert D.first_token_entropy(model, tok, ROW) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-5)


def test_gradient_norm_matches_an_explicit_computation(tiny):
    model, tok = tiny
    from cgd.training import records

    for with_critique in (True, False):
        got = D.gradient_norm(model, tok, ROW, with_critique)
        record = {"prompt": D.cgd_messages(ROW, with_critique=with_critique),
                  "completion": [{"role": "assistant", "content": ROW["refined_answer"]}]}
        prompt_ids, full_ids = records.token_ids(record, tok)
        ids = torch.tensor([full_ids])
        logits = model(input_ids=ids).logits[0, :-1]
        targets = ids[0, 1:]
        keep = torch.arange(len(targets)) >= len(prompt_ids) - 1  # predict completion tokens only
        loss = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
        grads = torch.autograd.grad(loss, [p for p in model.parameters()])
        expected = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
        assert got == pytest.approx(expected, rel=1e-4)
        assert all(p.grad is None for p in model.parameters())  # freed between rows
    assert D.gradient_norm(model, tok, ROW, True) != D.gradient_norm(model, tok, ROW, False)


def test_attention_shares_sum_to_one_per_token_and_layer(tiny):
    model, tok = tiny
    shares = D.attention_shares(model, tok, ROW, max_new_tokens=6)
    n_layers = model.config.num_hidden_layers
    assert shares.shape[1:] == (n_layers, 4) and 1 <= shares.shape[0] <= 6
    assert np.allclose(shares.sum(axis=-1), 1.0, atol=1e-4) and (shares >= 0).all()
    # step 0 against an explicit full forward pass at the last prompt position, layer 0
    rendered = D.render_row(tok, ROW)
    with torch.no_grad():
        att = model(input_ids=torch.tensor([rendered.ids]), output_attentions=True).attentions[0]
    w = att[0, :, -1, :].mean(0).numpy()
    expected = [w[rendered.section == k].sum() for k in range(3)]
    assert np.allclose(shares[0, 0, :3], expected, atol=1e-5)
    phases = D.phase_means(shares, 3)
    assert phases.shape == (n_layers, 4, 3)


def test_counterfactual_partner_is_never_the_rows_own_critique():
    ids = [f"r{i}" for i in range(25)]
    for seed in range(20):
        partners = D.counterfactual_partners(ids, seed)
        assert set(partners) == set(ids) and all(partners[i] != i for i in ids)
    assert D.counterfactual_partners(ids, 3) == D.counterfactual_partners(ids, 3)
    with pytest.raises(ValueError, match="at least two"):
        D.counterfactual_partners(["only"], 0)


@pytest.mark.slow
def test_diagnostics_notebook_end_to_end(tiny_model, tmp_path):
    import papermill as pm

    from cgd.runtime.io import read_json, write_jsonl

    rows = [{**ROW, "id": f"r{i}", "status": "ok", "in_mixture": True, "reference_answer": "7",
             "question": f"{ROW['question']} (case {i})"} for i in range(5)]
    rows.append({**ROW, "id": "bad", "status": "refine:truncated", "reference_answer": "7"})
    write_jsonl(tmp_path / "rows.jsonl", rows)
    names = ["base", "sft", "distilled_sft", "cft", "cgd", "cgd_no_critique"]
    pm.execute_notebook(
        "notebooks/08_diagnostics.ipynb", str(tmp_path / "08.ipynb"), kernel_name="cgd", progress_bar=False,
        cwd="notebooks",
        parameters={"overrides": {"student.model": str(tiny_model), "eval.generation.backend": "transformers",
                                  "diagnostics.rows": 4, "diagnostics.attention_rows": 2,
                                  "diagnostics.attention_max_new_tokens": 5, "diagnostics.counterfactual_rows": 3,
                                  "diagnostics.counterfactual_max_new_tokens": 8},
                    "rows_file": str(tmp_path / "rows.jsonl"), "out_dir": str(tmp_path / "out"),
                    "metrics_file": str(tmp_path / "m.json"),
                    "model_paths": {n: str(tiny_model) for n in names}})
    m = read_json(tmp_path / "m.json")
    assert m["rows"] == 4 and set(m["table9_entropy"]) == set(names)
    # every model is the same tiny model: identical entropies, a zero paired difference
    assert m["table9_entropy"]["sft"]["vs_cgd"]["diff"] == 0.0
    assert m["table10_gradient_norm"]["n"] == 4 and m["table10_gradient_norm"]["with_critique"]["mean"] > 0
    assert m["attention"]["rows"] == 2 and len(m["attention"]["mean_by_layer"]) == m["attention"]["layers"]
    assert set(m["table11_counterfactual"]) == {"base", "cgd"}
    assert m["provenance"]["models"]["cgd"]["path"] == str(tiny_model)
    with np.load(tmp_path / "out" / "attention.npz") as arrays:
        assert len(arrays.files) == 2 and all(arrays[k].shape[1:] == (2, 4) for k in arrays.files)
    columns, t9 = appendix_c.table9(m, [], "LLaMA3.1-8B Instruct")
    assert t9["cgd"]["mean_entropy"].run == round(m["table9_entropy"]["cgd"]["mean"], 2)
    assert t9["cgd"]["minus_cgd"].text() == "—"
    _, t10 = appendix_c.table10(m, [], "LLaMA3.1-8B Instruct")
    assert t10["with_critique"]["grad_norm_mean"].run == round(m["table10_gradient_norm"]["with_critique"]["mean"], 1)
    _, t11 = appendix_c.table11(m)
    assert t11["cgd"]["factual"].run == round(m["table11_counterfactual"]["cgd"]["factual"]["mean"], 1)


def _set_params(tmp_path, tiny_model, raw_params, student_url=None, **diagnostics):
    import yaml

    raw = yaml.safe_load(yaml.safe_dump(raw_params))
    raw["student"]["model"] = raw["teacher"]["model"] = str(tiny_model)
    raw["rollout"].update(backend="transformers", max_new_tokens=8, batch_size=2)
    if student_url:  # a served student whose answers end (a random tiny model's are all cut at the limit)
        raw["student"].update(base_url=student_url, api_key_env="CGD_TEST_KEY")
        raw["rollout"]["backend"] = "openai"
    raw["critique"]["backend"] = raw["refine"]["backend"] = "reference"
    raw["diagnostics"].update(rows=3, attention_rows=1, counterfactual_rows=2, **diagnostics)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_the_demo_set_is_a_sample_of_complete_stage04_rows(tmp_path, tiny_model, raw_params):
    from cgd.experiments import diagnostic_set
    from cgd.runtime.io import read_json, read_jsonl, write_jsonl

    rows = [{**ROW, "id": f"r{i}", "status": "ok"} for i in range(5)]
    rows.append({**ROW, "id": "bad", "status": "refine:truncated"})
    write_jsonl(tmp_path / "cgd_data.jsonl", rows)
    (tmp_path / "set" / "point").mkdir(parents=True)  # left by an earlier data-source set
    params = _set_params(tmp_path, tiny_model, raw_params, source="cgd_data")
    report = diagnostic_set.build(params, tmp_path / "set", str(tmp_path / "m.json"),
                                  cgd_data_file=str(tmp_path / "cgd_data.jsonl"))
    chosen = list(read_jsonl(tmp_path / "set" / "rows.jsonl"))
    assert len(chosen) == 3 and {r["status"] for r in chosen} == {"ok"}
    assert [r["id"] for r in chosen] == sorted(r["id"] for r in chosen)
    assert chosen == D.diagnostic_rows(rows, 3, 1234)  # the seeded draw stage 08 repeats
    assert report["trained_on"] is True and report["status"] == {"ok": 5, "refine:truncated": 1}
    assert not (tmp_path / "set" / "point").exists()
    assert read_json(tmp_path / "m.json")["rows"] == 3


@pytest.mark.slow
def test_a_data_source_set_runs_through_notebooks_01_to_04(tmp_path, tiny_model, raw_params, openmathinstruct2_hub,
                                                           chat_server, monkeypatch):  # noqa: F811 (the fixture)
    """OpenMathInstruct-2 (fixture in the hub layout): sampled apart from the training questions,
    answered by a served student (OpenAI-compatible fake), critiqued and refined (reference oracle)
    by the real notebooks; a second build finds the point done and reruns nothing."""
    from cgd.experiments import diagnostic_set
    from cgd.runtime.io import read_json, read_jsonl, write_jsonl

    training = tmp_path / "train.jsonl"
    write_jsonl(training, [{"id": "webinstruct-7", "question": "A train travels 240 miles in 4 hours. At the same "
                                                              "speed, how many miles does it travel in 7 hours?"}])
    monkeypatch.setenv("CGD_TEST_KEY", KEY)
    params = _set_params(tmp_path, tiny_model, raw_params, student_url=chat_server, source="openmathinstruct2",
                         hub_id=str(openmathinstruct2_hub), split="train_1M")
    report = diagnostic_set.build(params, tmp_path / "set", str(tmp_path / "m.json"), training_file=str(training))
    point = tmp_path / "set" / "point"
    sample = read_json(point / "metrics" / "01_sample_data.json")
    assert sample["source"] == "openmathinstruct2" and sample["held_out"] == 1 and sample["kept"] == 3
    assert report["trained_on"] is False and report["held_out"] == 1 and report["sampled"] == 3
    assert report["status"] == {"ok": 3} and report["rows"] == 3
    chosen = list(read_jsonl(tmp_path / "set" / "rows.jsonl"))
    assert len(chosen) == report["rows"] and all(r["id"].startswith("openmathinstruct2-") for r in chosen)
    assert all(r["critique"] and r["refined_answer"] for r in chosen)
    assert sorted(p.name for p in (point / "runs").iterdir()) == [f"{n}.ipynb" for n in diagnostic_set.CHAIN]
    again = diagnostic_set.build(params, tmp_path / "set", str(tmp_path / "m.json"), training_file=str(training))
    assert again["rows"] == report["rows"]


def test_attention_figures_are_the_same_png_on_every_draw(tmp_path):
    """figures/ is committed: a rerun with the same inputs must not change a PNG (the CI bands
    are a seeded bootstrap)."""
    from cgd.reporting import figures

    rng = np.random.default_rng(0)
    shares = {f"r{i}": rng.dirichlet(np.ones(4), size=(6, 5)) for i in range(4)}  # [step, layer, section]
    np.savez(tmp_path / "attention.npz", **shares)
    frame = figures.attention_frame(tmp_path / "attention.npz")
    drawn = []
    for k in range(2):
        for name, draw in (("flow", figures.attention_flow), ("layers", figures.attention_by_layer)):
            paths = figures.save(draw(frame, "t"), tmp_path / f"{name}{k}", ["png"], 60)
            drawn.append(paths[0].read_bytes())
    assert drawn[0] == drawn[2] and drawn[1] == drawn[3]
