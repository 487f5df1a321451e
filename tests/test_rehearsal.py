"""Rehearsals (cgd/rehearsal/rehearse.py): the overlay changes only sizes and swaps, every params key and every
DVC stage is exercised by some profile's rehearsal, and the stand-ins have their models' shape."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cgd import config as P
from cgd.config.profiles import apply_overlay, apply_profile
from cgd.data import benchmarks
from cgd.generation import chat
from cgd.rehearsal import rehearse as rehearsal
from cgd.rehearsal import standins

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (REPO / "configs" / "profiles").glob("*.yaml"))


def test_every_params_key_is_sized_swapped_or_kept():
    """A new params key fails here until it is put in exactly one of SIZES, SWAP_KEYS, KEEP."""
    keys = rehearsal.leaf_keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    groups = {"SIZES": set(rehearsal.SIZES), "SWAP_KEYS": set(rehearsal.SWAP_KEYS), "KEEP": rehearsal.KEEP}
    for a in groups:
        for b in groups:
            if a < b:
                assert not groups[a] & groups[b], f"in both {a} and {b}: {groups[a] & groups[b]}"
    classified = set().union(*groups.values())
    assert keys - classified == set(), "params keys no rehearsal decides about (add to SIZES, SWAP_KEYS or KEEP)"
    assert classified - keys == set(), "stale keys in cgd/rehearsal/rehearse.py"


def _rehearsed(profile: str, tmp_path: Path) -> tuple[dict, dict, list[dict]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    apply_profile(REPO / "configs" / "profiles" / f"{profile}.yaml", tmp_path / "params.yaml", REPO / "dvc.yaml")
    profiled = yaml.safe_load((tmp_path / "params.yaml").read_text())
    models = {m: str(tmp_path / "standins" / m) for m in rehearsal.hub_models(profiled)}
    for folder in [*models.values(), tmp_path / "hub" / "lm_eval_tasks"]:
        Path(folder).mkdir(parents=True)
    for folder in models.values():  # validation loads nothing, but a model folder has a config
        (Path(folder) / "config.json").write_text("{}")
    over, swaps = rehearsal.overlay(profiled, tmp_path, models)
    apply_overlay(over, tmp_path / "params.yaml", REPO / "dvc.yaml")
    return profiled, yaml.safe_load((tmp_path / "params.yaml").read_text()), swaps


@pytest.mark.parametrize("profile", PROFILES)
def test_the_overlay_keeps_every_code_path_setting_of_the_profile(profile, tmp_path):
    profiled, rehearsed, swaps = _rehearsed(profile, tmp_path)
    for key in rehearsal.KEEP:
        assert P.lookup(rehearsed, key) == P.lookup(profiled, key), key
    swapped = {s["key"] for s in swaps}
    changed = {k for k in rehearsal.leaf_keys(profiled) if P.lookup(rehearsed, k) != P.lookup(profiled, k)}
    assert changed <= swapped | set(rehearsal.SIZES)
    # Every hub model became a stand-in, every hub dataset a local folder.
    assert rehearsed["student"]["model"].startswith(str(tmp_path / "standins"))
    assert rehearsed["eval"]["hub_mirror"] == str(tmp_path / "hub")
    for name, over in rehearsed["ablations"]["teacher"]["teachers"].items():
        assert over["teacher.model"].startswith(str(tmp_path / "standins")) and over.get("teacher.tensor_parallel_size", 1) == 1
    sources = rehearsed["ablations"]["flaw_source"]["sources"]
    assert sources, "every paper profile sets a second flaw source"
    for name, spec in sources.items():  # a stand-in on one CPU process, like the student
        assert spec["model"].startswith(str(tmp_path / "standins")), name
        assert spec.get("tensor_parallel_size", 1) == 1 and spec.get("data_parallel_size", 1) == 1
    # Benchmarks keep their names; pass@k keeps its benchmarks and k.
    assert list(rehearsed["eval"]["benchmarks"]) == list(profiled["eval"]["benchmarks"])
    assert rehearsed["eval"]["pass_at_k"] == profiled["eval"]["pass_at_k"]


@pytest.mark.parametrize("has_bf16", [False, True])
def test_bf16_becomes_fp32_only_on_a_cpu_without_bf16_instructions(has_bf16, tmp_path, monkeypatch):
    from cgd.runtime import device

    monkeypatch.setattr(device, "bf16_supported", lambda: has_bf16)
    profiled, rehearsed, swaps = _rehearsed("llama8b-webinstruct", tmp_path)
    assert profiled["student"]["dtype"] == profiled["teacher"]["dtype"] == "bfloat16"
    want = "bfloat16" if has_bf16 else "float32"
    assert rehearsed["student"]["dtype"] == rehearsed["teacher"]["dtype"] == want
    assert ({"student.dtype", "teacher.dtype"} <= {s["key"] for s in swaps}) is not has_bf16


def _stages(params: dict, tmp_path: Path) -> set[str]:
    """dvc.yaml's stages as DVC expands them under `params` (matrix items included)."""
    work = tmp_path / "dvc"
    work.mkdir(exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([rehearsal.DVC, "init", "--no-scm", "-q", "-f"], cwd=work, check=True)
    out = subprocess.run([rehearsal.DVC, "stage", "list", "--name-only"], cwd=work, check=True, capture_output=True,
                         text=True).stdout.split()
    return set(out)


def test_every_stage_is_exercised_by_some_rehearsal(tmp_path):
    """A new stage (or a matrix no profile fills) fails here: some rehearsal must run it."""
    declared = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    by_profile = {}
    for profile in PROFILES:
        _, rehearsed, _ = _rehearsed(profile, tmp_path / profile)
        by_profile[profile] = _stages(rehearsed, tmp_path / profile)
    covered = {s.split("@")[0] for stages in by_profile.values() for s in stages}
    assert declared - covered == set()
    # The profile with the most stages and every stage kind is named; CI rehearses a real profile.
    widest = max(by_profile, key=lambda p: (len({s.split("@")[0] for s in by_profile[p]}), len(by_profile[p])))
    assert rehearsal.WIDEST_PROFILE == widest and rehearsal.CI_PROFILE in by_profile
    # CI's rehearsal covers the critique-content ablation (issue 41)
    assert any(s.startswith("ablate_critique_content@") for s in by_profile[rehearsal.CI_PROFILE])
    assert {s.split("@")[0] for s in by_profile[widest]} == declared
    # The paper's grids: 84 stages for the main setting (18 trainings, 19 evaluations, 36 ablation points),
    # with the flaw-source ablation's source (one stages 02-04 point, CGD trained on it at 3 seeds) and
    # the revised paper's critique-content variants (2 variants x 3 seeds) and its critique judge.
    main = by_profile["llama8b-webinstruct"]
    assert len(main) == 84
    assert sum(s.startswith("train@") for s in main) == 18
    assert sum(s.startswith("eval@") or s == "eval_base" for s in main) == 19
    assert sum(s.startswith("ablate_") for s in main) == 36
    assert sum(s.startswith("flaw_source_data@") for s in main) == 1


def test_the_run_shape_counts_the_profile_s_real_sizes(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    apply_profile(REPO / "configs" / "profiles" / "llama8b-webinstruct.yaml", tmp_path / "params.yaml", REPO / "dvc.yaml")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    stages = sorted(_stages(raw, tmp_path))
    shape = rehearsal.shape(raw, stages)
    assert shape["stages"] == 84 and shape["trainings"] == 18 and shape["evaluations"] == 19
    assert shape["flaw_sources"] == 1
    assert shape["generation"]["stages 02-04 per flaw source"] == {"prompts": 300_000, "max_tokens": 100_000 * 3 * 16384}
    assert shape["optimizer_steps_per_main_run"] == 1563  # ceil(100k / 64)
    assert shape["generation"]["rollout"] == {"prompts": 100_000, "max_tokens": 100_000 * 16384}
    # greedy: every problem of the ten benchmarks; pass@k: 32 samples of AIME24 and AIME25's 60 problems
    greedy = sum(benchmarks.REGISTRY[b].rows for b in raw["eval"]["benchmarks"])
    assert shape["generation"]["eval (each)"]["prompts"] == greedy + 60 * 32


def test_index_rows_and_expected_items():
    md = ("| paper | file(s) | status | how to enable |\n| --- | --- | --- | --- |\n"
          "| Table 1 | `figures/table1.md` | done | x |\n| Table 2 | — | not run | y |\n\n## Ran with\n")
    assert rehearsal._index_rows(md) == [{"paper": "Table 1", "files": "`figures/table1.md`", "status": "done"},
                                         {"paper": "Table 2", "files": "—", "status": "not run"}]
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "Table 2" not in rehearsal.expected_items(raw)
    assert ("Fig. 7" in rehearsal.expected_items(raw)) == bool(raw["ablations"]["lr"]["values"])
    raw["ablations"]["lr"]["values"] = [2e-5]
    assert "Fig. 7" in rehearsal.expected_items(raw)
    raw["figures"]["paper_model"] = "LLaMA3.1-8B"  # the base model's profile: Table 3 instead of Table 1
    assert {"Table 3"} <= rehearsal.expected_items(raw) and "Table 1" not in rehearsal.expected_items(raw)
    raw["figures"]["paper_model"] = "Qwen2.5-Math-7B"  # its five benchmarks: the cross-family table, not Table 1
    expected = rehearsal.expected_items(raw)
    assert "Cross-family: Qwen2.5-Math-7B (revised paper)" in expected and "Table 1" not in expected


# ---------------------------------------------------------------- stand-ins


@pytest.fixture(scope="module")
def questions():
    from cgd.rehearsal import mirror

    return [r["question"] for r in json.loads((mirror.FIXTURES / "webinstructsub_rows.json").read_text())]


@pytest.mark.parametrize("hub_id,layout,arch", [
    ("meta-llama/Llama-3.1-8B-Instruct", "chat", "LlamaForCausalLM"),
    ("meta-llama/Llama-3.1-8B", "plain", "LlamaForCausalLM"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "folded", "MixtralForCausalLM"),
    ("allenai/OLMo-2-1124-7B-Instruct", "chat", "Olmo2ForCausalLM"),
    ("simplescaling/s1.1-3B", "chat", "Qwen2ForCausalLM"),
])
def test_a_stand_in_has_its_model_s_shape(hub_id, layout, arch, tmp_path, questions):
    from transformers import AutoConfig, AutoTokenizer

    report = standins.build(hub_id, tmp_path / "m", questions, steps=2)
    assert (report["layout"], report["architecture"]) == (layout, arch)
    family, _ = standins.family_of(hub_id)
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    config = AutoConfig.from_pretrained(tmp_path / "m")
    assert config.max_position_embeddings == family.positions
    assert tok.eos_token == family.eos and tok.bos_token == family.bos
    for special in family.specials:  # each special token is one token, as in the real vocabulary
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    generation = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    stops = generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    assert stops == [tok.convert_tokens_to_ids(t) for t in family.stop]
    rendered = chat.prepare(tok).apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                                     tokenize=False, add_generation_prompt=True)
    if hub_id.endswith("Instruct") and "llama" in hub_id:
        assert "<|start_header_id|>system<|end_header_id|>" in rendered and "Cutting Knowledge Date" in rendered
    if "Mixtral" in hub_id:
        assert rendered == "<s>[INST] S\n\nU [/INST]"  # the system turn folded into the user's
    if "s1.1" in hub_id:
        assert rendered.endswith("<|im_start|>assistant\n") and tok.bos_token is None
    if family.adds_bos:  # LLaMA-3 and Mixtral tokenizers put BOS first themselves
        assert tok("x")["input_ids"][0] == tok.bos_token_id


def test_scripted_corpus_has_both_verdicts_and_the_think_markers():
    fam = standins.FAMILIES["s1.1"]
    chats = standins.scripted_corpus(["What is 2 + 2?"], fam, seed=0, n=40)
    answers = [c[-1]["content"] for c in chats]
    assert any(a.endswith("Conclusion: right") for a in answers) and any(a.endswith("Conclusion: wrong") for a in answers)
    assert all(a.startswith("<|im_start|>think\n") for a in answers if "boxed" in a)


def test_the_students_opening_follows_the_questions_first_word_so_greedy_rollouts_differ():
    # the paper profiles decode stage 02 greedily: a stand-in whose opening did not depend on the
    # question wrote one opening for every row, and the mixture ablation found no "right" rows
    qs = [f"{name} stacks 3 crates. How many?" for name in ("Ava", "Ben", "Chloe", "Dmitri", "Esi", "Farah")]
    verdicts = {standins._verdict(q) for q in qs}
    assert verdicts == {"right", "wrong"}
    assert standins._verdict("Ava has 9 pens.") == standins._verdict(qs[0])
    fam = standins.FAMILIES["llama3-instruct"]
    rollouts = [c for c in standins.scripted_corpus(qs, fam, seed=0, n=60) if c[-2]["content"] in qs]
    assert rollouts and all(c[-1]["content"].startswith(standins.OPENINGS[standins._verdict(c[-2]["content"])])
                            for c in rollouts)


def test_an_unknown_hub_model_names_the_fix():
    with pytest.raises(KeyError, match="HUB_MODELS"):
        standins.family_of("org/unknown-model")


# ---------------------------------------------------------------- lm-eval local tasks


def test_local_lm_eval_tasks_keep_lm_eval_s_groups_and_read_local_rows(tmp_path):
    from lm_eval.tasks import TaskManager

    from cgd.rehearsal import lmeval_local

    written = lmeval_local.write(["leaderboard_musr", "truthfulqa_mc2"], tmp_path)
    assert written == ["leaderboard_musr_murder_mysteries", "leaderboard_musr_object_placements",
                       "leaderboard_musr_team_allocation", "truthfulqa_mc2"]
    local = yaml.safe_load((tmp_path / "truthfulqa_mc2.yaml").read_text())
    assert local["include"].endswith("truthfulqa/truthfulqa_mc2.yaml") and local["dataset_path"] == "json"
    tm = TaskManager(include_path=str(tmp_path))
    loaded = tm.load(["leaderboard_musr"])  # lm-eval's own group, resolved to the local subtasks
    assert loaded["group_map"]["leaderboard_musr"] == written[:3]
    docs = [d for t in loaded["tasks"].values() for d in t.test_docs()]
    assert len(docs) == 3 * len(lmeval_local.ROWS["TAUR-Lab/MuSR"])
    with pytest.raises(KeyError, match="neither a task nor a group"):
        lmeval_local.leaves(["no_such_task"])


def test_generated_pool_rows_keep_the_fixture_schema_and_are_distinct_across_pools(tmp_path):
    from cgd.rehearsal import mirror

    for repo in mirror.QUESTION_FIELD:
        fixture = json.loads((mirror.FIXTURES / mirror.POOLS[repo][1]).read_text())
        extra = mirror.extra_rows(repo, 5)
        assert all(set(r) == set(fixture[0]) for r in extra), repo
    qs = mirror.questions({r: 5 for r in mirror.QUESTION_FIELD})
    generated = qs[-5:] + mirror.questions({"TIGER-Lab/WebInstructSub": 5})[11:16]
    assert len(set(generated)) == 10  # the probe set's rows are not the training pool's
    folder = mirror.write_pool(tmp_path, "meta-math/MetaMathQA", extra=3)
    assert len(json.loads((folder / "MetaMathQA-395K.json").read_text())) == 7 + 3


def test_generation_errors_are_found_in_every_stage_and_point_but_over_long_prompts(tmp_path):
    """A stage can finish with every request refused (the main profile's evaluation once did: a
    served model took at most 4 stop strings); the rehearsal fails on such rows."""
    from cgd.rehearsal import outcome
    from cgd.runtime.io import write_jsonl

    write_jsonl(tmp_path / "data" / "06_eval" / "base" / "samples.jsonl",
                [{"id": "a", "error": "BadRequestError: Error code: 400\nmore"}, {"id": "b", "error": None}] * 2)
    write_jsonl(tmp_path / "data" / "06_eval" / "base" / "shards" / "shard-00000.jsonl", [{"id": "a", "error": "x"}])
    write_jsonl(tmp_path / "data" / "02_rollout" / "rollouts.jsonl",
                [{"rollout_error": "prompt has 900 tokens; student.max_model_len is 512"}])
    write_jsonl(tmp_path / "sweeps" / "mixture" / "p" / "eval" / "samples.jsonl", [{"error": "boom"}])
    assert outcome.generation_errors(tmp_path) == {
        "data/06_eval/base/samples.jsonl": {"BadRequestError: Error code: 400": 2},
        "sweeps/mixture/p/eval/samples.jsonl": {"boom": 1}}
    assert outcome.generation_errors(tmp_path / "nothing") == {}
