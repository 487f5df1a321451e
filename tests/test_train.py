"""Stage 05: records per method, the completion-only mask TRL builds, length policy, training runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cgd import config as P
from cgd.runtime.io import read_json, write_jsonl
from cgd.training import records, train

REPO = Path(__file__).resolve().parents[1]


def _row(i, status="ok", in_mixture=True):
    # Each field carries its own marker word so a test can tell which text landed where.
    return {"id": f"r{i}", "question": f"QUESTIONTEXT {i}: what is {i} + {i}?",
            "reference_solution": f"GOLDTEXT {i}+{i}={2 * i}\n#### {2 * i}",
            "student_answer": f"STUDENTTEXT {i}+{i}={2 * i + 1}" + " and so on" * i,
            "critique": "CRITIQUETEXT the sum is wrong.\n\nConclusion: wrong",
            "refined_answer": f"REFINEDTEXT {i}+{i}={2 * i}, so \\boxed{{{2 * i}}}" + " indeed" * (2 * i),
            "status": status, "in_mixture": in_mixture}


ROWS = [_row(i) for i in range(6)] + [_row(6, status="refine:truncated", in_mixture=False),
                                      _row(7, in_mixture=False)]
# What each method conditions on (in its prompt) and learns (its completion), by marker word.
EXPECTED = {
    "sft": ({"QUESTIONTEXT"}, "GOLDTEXT"),
    "distilled_sft": ({"QUESTIONTEXT"}, "REFINEDTEXT"),
    "cft": ({"QUESTIONTEXT", "STUDENTTEXT"}, "CRITIQUETEXT"),
    "cgd": ({"QUESTIONTEXT", "STUDENTTEXT", "CRITIQUETEXT"}, "REFINEDTEXT"),
    "cgd_no_critique": ({"QUESTIONTEXT", "STUDENTTEXT"}, "REFINEDTEXT"),
    "cft_gpt4o": ({"QUESTIONTEXT", "STUDENTTEXT"}, "CRITIQUETEXT"),  # CFT's layout on WebInstruct-CFT rows
}
MARKERS = {"QUESTIONTEXT", "GOLDTEXT", "STUDENTTEXT", "CRITIQUETEXT", "REFINEDTEXT"}


@pytest.mark.parametrize("method", P.METHODS)
def test_records_condition_on_and_learn_what_the_paper_says(method):
    recs, report = records.build(ROWS, method, records.templates())
    assert report == {"method": method, "rows": 8, "records": 6,
                      "excluded": {"not in mixture": 1, "status refine:truncated": 1}}
    prompt_markers, target = EXPECTED[method]
    for rec in recs:
        prompt = "\n".join(m["content"] for m in rec["prompt"])
        completion = rec["completion"][0]["content"]
        # x alone is the student's view (CoT system turn + question); the others are one user turn
        roles = ["system", "user"] if method in ("sft", "distilled_sft") else ["user"]
        assert [m["role"] for m in rec["prompt"]] == roles and rec["completion"][0]["role"] == "assistant"
        assert {m for m in MARKERS if m in prompt} == prompt_markers
        assert {m for m in MARKERS if m in completion} == {target}


def test_cgd_prompt_follows_appendix_d():
    rec = records.cgd(ROWS[1], records.templates())
    assert rec["prompt"][0]["content"] == (
        f"Question: {ROWS[1]['question']}\n\nStudent's Initial Answer: {ROWS[1]['student_answer']}"
        f"\n\nCritique: {ROWS[1]['critique']}")
    assert rec["completion"][0]["content"] == ROWS[1]["refined_answer"]


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer and chat template, read from the embedded GGUF (pad == eos)."""
    from transformers import AutoTokenizer

    from cgd.data import assets

    gguf = assets.gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(params=["tiny", "smollm2"])
def tokenizer(request, tiny_model):
    from transformers import AutoTokenizer

    if request.param == "tiny":
        return AutoTokenizer.from_pretrained(tiny_model)
    return request.getfixturevalue("smollm2_tokenizer")


def _cfg(tiny_model, **train_overrides):
    raw = P.apply_overrides(
        __import__("yaml").safe_load((REPO / "params.yaml").read_text()),
        {"student.model": str(tiny_model), **{f"train.{k}": v for k, v in train_overrides.items()}})
    return P.from_dict(raw, REPO / "dvc.yaml")


def _prepared(cfg, recs, tokenizer, tiny_model, tmp_path):
    """The dataset and collator exactly as SFTTrainer builds them from our SFTConfig."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    args = train.sft_config(cfg.train, train.batch_plan(cfg.train, 1), 0, str(tmp_path / "out"),
                            bf16=False, use_cpu=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=Dataset.from_list(recs), processing_class=tokenizer)
    return trainer.train_dataset, trainer.data_collator


@pytest.mark.parametrize("method", P.METHODS)
def test_labels_mask_prompt_and_padding_and_keep_every_completion_token(
        method, tokenizer, tiny_model, tmp_path):
    cfg = _cfg(tiny_model, max_length=4096)
    recs, _ = records.build(ROWS, method, records.templates())
    recs, fit = records.fit_length(recs, tokenizer, cfg.train.max_length, "drop")
    assert fit["kept"] == len(recs) == 6 and fit["truncated"] == fit["dropped_overlong"] == 0
    dataset, collator = _prepared(cfg, recs, tokenizer, tiny_model, tmp_path)
    batch = collator([dataset[i] for i in range(len(dataset))])  # lengths differ: padding happens
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    for i, rec in enumerate(recs):
        prompt_ids = tokenizer.apply_chat_template(rec["prompt"], add_generation_prompt=True,
                                                   tokenize=True, return_dict=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=True,
                                                 return_dict=True)["input_ids"]
        n, p = len(full_ids), len(prompt_ids)
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        assert ids[:n].tolist() == full_ids and mask[:n].all() and not mask[n:].any()
        assert (labels[:p] == -100).all(), "a prompt token is in the loss"
        assert (labels[n:] == -100).all(), "a padding token is in the loss"
        assert labels[p:n].tolist() == full_ids[p:], "a completion token is missing from the loss"
        learned = tokenizer.decode(labels[p:n].tolist())
        assert rec["completion"][0]["content"] in learned  # the whole completion, nothing cut
        assert tokenizer.eos_token in learned or "<|im_end|>" in learned  # it learns to stop


@pytest.mark.parametrize("policy", ["drop", "truncate"])
def test_overlong_rows_are_counted_and_handled_as_params_say(policy, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    recs, _ = records.build(ROWS, "cgd", records.templates())
    lengths = [records.token_lengths(r, tokenizer) for r in recs]
    max_length = sorted(total for _, total in lengths)[3]  # the two longest rows are over
    over = [total - max_length for _, total in lengths if total > max_length]
    kept, fit = records.fit_length(recs, tokenizer, max_length, policy)
    if policy == "drop":
        assert fit["dropped_overlong"] == len(over) == 2 and len(kept) == 4
    else:
        assert fit["truncated"] == 2 and fit["completion_tokens_cut"] == sum(over) and len(kept) == 6
        cfg = _cfg(tiny_model, max_length=max_length, overlong="truncate")
        dataset, _ = _prepared(cfg, kept, tokenizer, tiny_model, tmp_path)
        assert len(dataset) == 6 and max(len(x) for x in dataset["input_ids"]) == max_length
    # A prompt that alone fills max_length would be dropped by TRL; it is dropped here, counted.
    shortest_prompt = min(p for p, _ in lengths)
    kept, fit = records.fit_length(recs, tokenizer, shortest_prompt, policy)
    assert not kept and fit["dropped_prompt_fills_max_length"] == 6


def test_batch_plan_derives_accumulation_and_names_the_key(tiny_model):
    cfg = _cfg(tiny_model, global_batch_size=64, per_device_batch_size=2).train
    assert train.batch_plan(cfg, 8) == train.BatchPlan(64, 2, 8, 4)
    assert train.batch_plan(cfg, 1).accumulation == 32
    with pytest.raises(P.ParamsError, match=r"'train.global_batch_size'.*2 x 3"):
        train.batch_plan(cfg, 3)


def test_auto_per_device_batch_fits_the_token_budget(tiny_model):
    """`per_device_batch_size: auto`: the most rows dividing a device's share of the global batch
    whose padded size stays within the budget; the global batch never moves."""
    cfg = _cfg(tiny_model, global_batch_size=64, per_device_batch_size="auto", tokens_per_device_batch=16384).train
    assert train.batch_plan(cfg, 8, longest=900) == train.BatchPlan(64, 8, 8, 1, 16384, 900)  # short SFT rows
    assert train.batch_plan(cfg, 8, longest=3000) == train.BatchPlan(64, 4, 8, 2, 16384, 3000)
    assert train.batch_plan(cfg, 8, longest=8192) == train.BatchPlan(64, 2, 8, 4, 16384, 8192)  # as 2 rows x 8192
    assert train.batch_plan(cfg, 8, longest=20000).per_device == 1  # longer than the budget: alone
    assert train.batch_plan(cfg, 1, longest=5000) == train.BatchPlan(64, 2, 1, 32, 16384, 5000)
    with pytest.raises(P.ParamsError, match="train.global_batch_size"):
        train.batch_plan(cfg, 3, longest=900)
    with pytest.raises(P.ParamsError, match="train.tokens_per_device_batch"):
        _cfg(tiny_model, per_device_batch_size="auto")


def test_auto_batch_trains_the_same_steps_within_the_budget(tiny_model, tmp_path):
    """The tiny run (global batch 4) with a budget that holds the whole share, then one that holds a
    single longest record: the same optimizer steps, and no micro-batch past the budget."""
    big, _ = _train_tiny(tiny_model, tmp_path, "big", per_device_batch_size="auto", tokens_per_device_batch=10**6)
    longest = big["length"]["max_tokens"]
    assert big["batch"] == {"global_batch": 4, "per_device": 4, "world_size": 1, "accumulation": 1,
                            "token_budget": 10**6, "longest_record": longest}
    one, _ = _train_tiny(tiny_model, tmp_path, "one", per_device_batch_size="auto", tokens_per_device_batch=longest)
    assert (one["batch"]["per_device"], one["batch"]["accumulation"]) == (1, 4)
    assert big["steps"] == one["steps"] == 4 and big["non_pad_tokens"] == one["non_pad_tokens"]
    assert one["largest_micro_batch_tokens"] <= longest < big["largest_micro_batch_tokens"] <= 4 * longest


def test_launch_command_uses_the_repo_deepspeed_config(tiny_model):
    cfg = _cfg(tiny_model, deepspeed="configs/accelerate/zero3.yaml")
    cmd = train.launch_command(cfg, "cgd", 1, "d.jsonl", "models/cgd/seed1", "live", "ckpt",
                               "params.yaml", {"train.lr": 5e-6}, num_gpus=4)
    assert cmd[:7] == ["accelerate", "launch", "--config_file", "configs/accelerate/zero3.yaml",
                       "--num_processes", "4", "-m"]
    assert json.loads(cmd[cmd.index("--overrides") + 1]) == {"train.lr": 5e-6}
    import yaml

    acc = yaml.safe_load((REPO / "configs/accelerate/zero3.yaml").read_text())
    ds = json.loads((REPO / acc["deepspeed_config"]["deepspeed_config_file"]).read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["bf16"]["enabled"] == "auto"  # filled from the Trainer's args, never contradicting them


def _train_tiny(tiny_model, tmp_path, name, method="cgd", **overrides):
    cfg = _cfg(tiny_model, **{"lr": 1e-3, "per_device_batch_size": 2, "global_batch_size": 4, "epochs": 2,
                              **overrides})
    data = tmp_path / "cgd_data.jsonl"
    write_jsonl(data, ROWS)
    out = tmp_path / name
    metrics = train.train(cfg, method, 0, str(data), str(out / "model"), str(out / "live"),
                          str(out / "ckpt"))
    return metrics, out


def test_training_writes_bf16_model_metrics_and_curves_deterministically(tiny_model, tmp_path):
    from safetensors.torch import load_file

    metrics, out = _train_tiny(tiny_model, tmp_path, "a")
    assert metrics["steps"] == 4 and metrics["records"] == 6  # 6 rows / batch 4 -> 2 steps x 2 epochs
    assert metrics["batch"] == {"global_batch": 4, "per_device": 2, "world_size": 1, "accumulation": 2,
                                "token_budget": None, "longest_record": None}
    assert metrics["non_pad_tokens"] <= metrics["tokens"] and metrics["loss_tokens"] < metrics["non_pad_tokens"]
    assert metrics["data"]["excluded"] == {"not in mixture": 1, "status refine:truncated": 1}
    assert metrics["first_step_s"] > 0 and metrics["steady_non_pad_tokens_per_s"] > 0
    weights = load_file(out / "model" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert (out / "model" / "tokenizer.json").exists() and not (out / "model" / "training_args.bin").exists()
    summary = read_json(out / "live" / "metrics.json")
    assert summary["steps"] == 4 and summary["method"] == "cgd"
    assert summary["loss_trend"]["logged_steps"] == 4 and isinstance(summary["loss_trend"]["fell"], bool)
    for name in ("loss", "grad_norm", "learning_rate", "tokens_per_second", "progress"):
        lines = (out / "live" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
        assert lines[0] == f"step\t{name}" and len(lines) == 1 + 4, name
    assert not (out / "ckpt").exists()
    again, out_b = _train_tiny(tiny_model, tmp_path, "b")
    assert again["train_loss"] == metrics["train_loss"]
    assert (out_b / "model" / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_step_clock_sets_the_first_step_aside(monkeypatch):
    """The steady rate counts the tokens and seconds after the first optimizer step, each clock
    reading after a device sync; a one-step run has no steady rate."""
    from types import SimpleNamespace

    times, tokens, syncs = iter([101.0, 105.0]), iter([50, 450]), []
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(times))
    clock = train.StepClock(lambda: next(tokens), lambda: syncs.append(1))
    clock.start = 100.0
    clock.callback.on_step_end(None, SimpleNamespace(global_step=1), None)
    clock.callback.on_step_end(None, SimpleNamespace(global_step=2), None)  # only the first is kept
    clock.callback.on_train_end(None, SimpleNamespace(global_step=5), None)
    assert clock.report() == {"first_step_s": 1.0, "steady_non_pad_tokens_per_s": 100.0} and len(syncs) == 2

    one = train.StepClock(lambda: 7, lambda: None)
    one.start, one.first, one.last = 0.0, (1.0, 7, 1), (1.0, 7, 1)
    assert one.report() == {"first_step_s": 1.0, "steady_non_pad_tokens_per_s": None}


def test_killed_training_resumes_from_its_checkpoint(tiny_model, tmp_path):
    """SIGKILL once a checkpoint past step 3 is on disk; the rerun resumes there and ends where an
    uninterrupted run ends, byte for byte."""
    data = tmp_path / "cgd_data.jsonl"
    write_jsonl(data, ROWS)
    overrides = {"student.model": str(tiny_model), "train.lr": 1e-3, "train.per_device_batch_size": 1,
                 "train.global_batch_size": 1, "train.epochs": 6, "train.save_steps": 1}

    def cmd(name):
        return [sys.executable, "-m", "cgd", "train", "--overrides", json.dumps(overrides),
                "--method", "cgd", "--seed", "0", "--data", str(data),
                "--model-out", str(tmp_path / name / "model"), "--live-dir", str(tmp_path / name / "live"),
                "--checkpoint-dir", str(tmp_path / name / "ckpt")]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd("k"), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    def saved_steps():
        return [int(p.name.split("-")[1]) for p in (tmp_path / "k" / "ckpt").glob("checkpoint-*")
                if (p / "trainer_state.json").exists()]  # complete checkpoints only

    while not any(step >= 3 for step in saved_steps()):
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd("k"), cwd=REPO, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    subprocess.run(cmd("full"), cwd=REPO, env=env, check=True, capture_output=True)
    resumed = read_json(tmp_path / "k" / "live" / "metrics.json")
    assert resumed["resumed_from"] and 3 <= int(resumed["resumed_from"].rsplit("-", 1)[1]) < 36
    assert resumed["steps"] == 36
    a = (tmp_path / "k" / "model" / "model.safetensors").read_bytes()
    b = (tmp_path / "full" / "model" / "model.safetensors").read_bytes()
    assert a == b


@pytest.mark.slow
def test_train_notebook_through_papermill(tiny_model, tmp_path):
    import papermill as pm

    data = tmp_path / "cgd_data.jsonl"
    write_jsonl(data, ROWS)
    pm.execute_notebook(
        str(REPO / "notebooks/05_train.ipynb"), str(tmp_path / "05.ipynb"), kernel_name="cgd",
        progress_bar=False, cwd=str(REPO / "notebooks"),
        parameters={"overrides": {"student.model": str(tiny_model), "train.global_batch_size": 2, "train.epochs": 1},
                    "method": "cft", "seed": 3, "data_file": str(data),
                    "model_dir": str(tmp_path / "model"), "live_dir": str(tmp_path / "live")})
    summary = read_json(tmp_path / "live" / "metrics.json")
    assert summary["method"] == "cft" and summary["seed"] == 3 and summary["steps"] == 3
    assert (tmp_path / "model" / "model.safetensors").exists()


_HEAP_PROBE = """
import ctypes, ctypes.util, sys
from cgd.runtime import device
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.sbrk.restype = libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "on":
    assert device.keep_freed_memory()
top = libc.sbrk(0)
block = libc.malloc(64 << 20)
grown = libc.sbrk(0) - top
libc.free(block)
print(grown >= 64 << 20, libc.sbrk(0) - top >= 64 << 20)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc")
def test_keep_freed_memory_serves_big_blocks_from_the_heap_and_keeps_them():
    def probe(mode):
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True,
                             check=True)
        return out.stdout.split()

    assert probe("off") == ["False", "False"]  # glibc's default: a fresh mmap, unmapped on free
    assert probe("on") == ["True", "True"]  # from the heap, still there after free


def test_a_two_node_launch_uses_torchrun_rendezvous_not_pdsh(tiny_model):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    cfg = _cfg(tiny_model, deepspeed="configs/accelerate/zero3.yaml")
    cmd = train.launch_command(cfg, "cgd", 0, "d.jsonl", "m", "live", "ckpt", "params.yaml", num_gpus=8,
                               num_machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    args = launch_command_parser().parse_args(cmd[2:])  # what `accelerate launch` parses
    args, defaults, _ = _validate_launch_command(args)
    assert args.use_deepspeed and args.num_machines == 2 and args.num_processes == 16
    assert args.deepspeed_multinode_launcher == "standard"
    # as accelerate's launch_command does before calling its DeepSpeed launcher
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    launcher_cmd, _ = prepare_deepspeed_cmd_env(args)
    assert launcher_cmd is None  # accelerate builds a torchrun launch, not `deepspeed --launcher pdsh`
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert args.rdzv_endpoint == "10.0.0.1:29500"  # node 0, where every node meets
    with pytest.raises(ValueError, match="main_process_ip"):
        train.launch_command(cfg, "cgd", 0, "d.jsonl", "m", "live", "ckpt", "params.yaml", num_gpus=8,
                             num_machines=2)


def test_ranks_agree_on_the_fingerprint_before_a_stale_checkpoint_goes(tmp_path, monkeypatch):
    import accelerate.utils

    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-4").mkdir(parents=True)
    (ckpt / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (ckpt / "fingerprint.txt").write_text("old")
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: ["new", "other"])
    with pytest.raises(RuntimeError, match="ranks disagree"):
        train._resume_point(ckpt, "new")
    assert (ckpt / "checkpoint-4").exists()  # nothing deleted on a disagreement
    assert train._latest_checkpoint(ckpt, "new", delete_stale=False) is None and ckpt.exists()
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: ["old", "old"])
    assert train._resume_point(ckpt, "old").endswith("checkpoint-4")
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: ["new", "new"])
    assert train._resume_point(ckpt, "new") is None and not ckpt.exists()  # main process: stale goes


def _losses(out):
    lines = (out / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[1]) for line in lines]


def _same_weights(a_dir, b_dir, atol=1e-2) -> bool:
    from safetensors.torch import load_file

    a, b = load_file(a_dir / "model" / "model.safetensors"), load_file(b_dir / "model" / "model.safetensors")
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=atol) for k in a)


def test_the_fused_adamw_trains_the_same_model(tiny_model, tmp_path):
    """params.yaml's fused AdamW (one kernel per step on CPU and GPUs) against the foreach one it
    replaced: the same per-step losses and weights up to rounding."""
    _, fused = _train_tiny(tiny_model, tmp_path, "fused", optimizer="adamw_torch_fused")
    _, foreach = _train_tiny(tiny_model, tmp_path, "foreach", optimizer="adamw_torch")
    assert len(_losses(fused)) == 4 and _losses(fused) == pytest.approx(_losses(foreach), rel=1e-3)
    assert _same_weights(fused, foreach)


def test_scoring_only_completion_tokens_keeps_each_steps_loss(tiny_model, tmp_path, monkeypatch):
    """TRL's fused LM head scores every position off Triton devices; ours scores the completion
    tokens only (the loss's tokens). The per-step losses and the trained weights stay the same."""
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton as trl_decision

    losses = _losses
    with monkeypatch.context() as m:  # TRL as shipped: every position through the LM head
        m.setattr(trl_utils, "_use_triton", trl_decision)
        m.setattr(train, "score_completion_tokens_only", lambda: None)
        _, full = _train_tiny(tiny_model, tmp_path, "every-position")
    monkeypatch.setattr(trl_utils, "_use_triton", trl_decision)
    _, compact = _train_tiny(tiny_model, tmp_path, "completion-only")
    assert getattr(trl_utils._use_triton, "cgd_compact_on_cpu", False)
    assert len(losses(full)) == 4 and losses(compact) == pytest.approx(losses(full), rel=1e-3)
    assert _same_weights(full, compact)


def test_a_run_shorter_than_logging_steps_still_logs_its_first_step(tiny_model, tmp_path):
    """Fig. 8 needs a loss curve: at logging_steps 10 a 4-step run (a small mixture point, a
    rehearsal) logged no loss at all before logging_first_step (found by rehearsing llama8b-webinstruct)."""
    _, out = _train_tiny(tiny_model, tmp_path, "short", logging_steps=10)
    assert len(_losses(out)) == 1  # the first of its 4 optimizer steps


def test_the_loss_trend_compares_the_first_and_last_fifth_of_logged_steps():
    from cgd.training.train import loss_trend

    history = [{"loss": v, "step": i} for i, v in enumerate([2.0, 1.8, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5])]
    history.append({"train_runtime": 3.0})  # the Trainer's closing entry has no loss
    t = loss_trend(history)
    assert (t["logged_steps"], t["first"], t["last"]) == (10, 1.9, 0.55) and t["fell"] is True
    assert t["change"] == -1.35
    flat = loss_trend([{"loss": v} for v in (1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0)])
    assert flat["fell"] is False  # noise around a flat line did not fall
    assert loss_trend([{"loss": 1.0}])["fell"] is None
