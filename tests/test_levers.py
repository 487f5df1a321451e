"""Stage 05's speed levers (cgd/training/levers.py, background_log.py): how auto decides, and that each
lever that runs on CPU trains the same losses on the same masked tokens as the padded, in-line path."""

import threading
import time

import pytest
import torch

from cgd.config import ParamsError
from cgd.runtime.io import write_jsonl
from cgd.training import background_log, levers, records, train
from tests.test_train import ROWS, _cfg


def test_auto_levers_stay_off_on_cpu_and_turn_on_where_they_can_run(tiny_model):
    cfg = _cfg(tiny_model).train
    cpu = levers.resolve(cfg, cuda=False, liger_missing=None)
    assert (cpu.padding_free, cpu.attn_implementation, cpu.liger_kernel) == (False, "sdpa", False)
    gpu = levers.resolve(cfg, cuda=True, liger_missing=None)
    assert (gpu.padding_free, gpu.attn_implementation, gpu.liger_kernel) == (True, "flex_attention", True)
    no_liger = levers.resolve(cfg, cuda=True, liger_missing="liger-kernel not installed")
    assert not no_liger.liger_kernel and "liger-kernel not installed" in no_liger.why["liger_kernel"]
    truncate = levers.resolve(_cfg(tiny_model, overlong="truncate").train, cuda=True, liger_missing=None)
    assert not truncate.padding_free and truncate.attn_implementation == "sdpa"


def test_forcing_a_lever_that_cannot_run_names_the_key(tiny_model):
    with pytest.raises(ParamsError, match="train.liger_kernel"):
        levers.resolve(_cfg(tiny_model, liger_kernel=True).train, cuda=False, liger_missing=None)
    with pytest.raises(ParamsError, match="train.padding_free"):
        _cfg(tiny_model, padding_free=True, overlong="truncate")


def test_padding_free_sft_config_leaves_truncation_to_fit_length(tiny_model, tmp_path):
    cfg = _cfg(tiny_model, padding_free=True, per_device_batch_size=2, global_batch_size=4).train
    lever_set = levers.resolve(cfg, cuda=False)
    args = train.sft_config(cfg, train.batch_plan(cfg, 1), 0, str(tmp_path), bf16=False, use_cpu=True,
                            lever_set=lever_set)
    assert args.padding_free and args.max_length is None and not args.use_liger_kernel
    assert args.per_device_train_batch_size == 2 and args.gradient_accumulation_steps == 2


def _collated(tiny_model, tmp_path, padding_free: bool):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    cfg = _cfg(tiny_model, padding_free=padding_free, per_device_batch_size=4, global_batch_size=4).train
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    recs, _ = records.build(ROWS, "cgd", records.templates())
    args = train.sft_config(cfg, train.batch_plan(cfg, 1), 0, str(tmp_path / str(padding_free)),
                            bf16=False, use_cpu=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=Dataset.from_list(recs), processing_class=tokenizer)
    return trainer.data_collator([trainer.train_dataset[i] for i in range(4)])


def test_padding_free_batches_learn_exactly_the_padded_batches_completion_tokens(tiny_model, tmp_path):
    padded = _collated(tiny_model, tmp_path, padding_free=False)
    packed = _collated(tiny_model, tmp_path, padding_free=True)
    # the same tokens in the loss, row by row, in the same order; nothing of a prompt, no pad
    learned = [row[row != -100].tolist() for row in padded["labels"]]
    assert packed["labels"].shape[0] == 1 and "attention_mask" not in packed
    assert packed["labels"][0][packed["labels"][0] != -100].tolist() == sum(learned, [])
    assert packed["input_ids"].shape[1] == int(padded["attention_mask"].sum())  # no pad computed
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == 4  # four rows, each attending only within itself (position_ids restart)


def _train(tiny_model, tmp_path, name, **overrides):
    cfg = _cfg(tiny_model, **{"lr": 1e-3, "per_device_batch_size": 3, "global_batch_size": 6, "epochs": 4,
                              "logging_steps": 1, **overrides})
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, ROWS)
    out = tmp_path / name
    metrics = train.train(cfg, "cgd", 0, str(data), str(out / "model"), str(out / "live"), str(out / "ckpt"))
    losses = [float(line.split("\t")[1]) for line in
              (out / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]]
    return metrics, losses


def test_padding_free_training_matches_padded_losses_within_bf16_noise(tiny_model, tmp_path):
    padded, padded_losses = _train(tiny_model, tmp_path, "padded", padding_free=False)
    packed, packed_losses = _train(tiny_model, tmp_path, "packed", padding_free=True)
    assert packed["levers"]["padding_free"] and not padded["levers"]["padding_free"]
    # two micro-batches of three rows accumulated per step (the loss divides by both's completion tokens)
    assert packed["loss_tokens"] == padded["loss_tokens"] and packed["steps"] == padded["steps"] == 4
    assert packed["non_pad_tokens"] == padded["non_pad_tokens"] == packed["tokens"] < padded["tokens"]
    assert len(packed_losses) == len(padded_losses) == 4 and len(set(padded_losses)) > 2  # the weights moved
    # bf16 autocast on this CPU: the two paths sum in another order, so agree to bf16's ~3 digits
    assert packed_losses == pytest.approx(padded_losses, rel=2e-2)


def test_bf16_parameters_would_drop_the_paper_learning_rate_updates():
    """Why in-process training keeps fp32 parameters: one AdamW step at the paper's lr (1e-6) moves
    fp32 weights of a typical size and leaves the same weights in bf16 where they were."""
    torch.manual_seed(0)
    w = torch.randn(4096) * 0.02
    moved = {}
    for dtype in (torch.float32, torch.bfloat16):
        p = torch.nn.Parameter(w.to(dtype).clone())
        opt = torch.optim.AdamW([p], lr=1e-6, weight_decay=0.0)
        p.grad = torch.randn_like(p)
        before = p.detach().clone()
        opt.step()
        moved[dtype] = (p.detach() != before).float().mean().item()
    assert moved[torch.float32] > 0.99 and moved[torch.bfloat16] < 0.05


class _Recorder:
    def __init__(self, delay=0.0, fail_at=None):
        self.seen, self.ended, self.delay, self.fail_at = [], False, delay, fail_at
        self.threads = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        if logs.get("step") == self.fail_at:
            raise ValueError("disk full")
        self.seen.append(dict(logs))

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = len(self.seen)


def test_background_logging_returns_at_once_keeps_every_point_in_order_and_drains_at_the_end():
    inner = _Recorder(delay=0.05)
    cb = background_log.Background(inner)
    start = time.perf_counter()
    for step in range(10):
        logs = {"step": step, "loss": 1.0 / (step + 1)}
        cb.on_log(None, object(), None, logs=logs)
        logs["loss"] = -1  # the Trainer reuses its dicts: the writer holds its own copy
    assert time.perf_counter() - start < 0.25  # ten 50 ms writes did not hold the loop
    cb.on_train_end(None, object(), None)
    assert inner.ended == 10 and [s["step"] for s in inner.seen] == list(range(10))
    assert all(s["loss"] > 0 for s in inner.seen) and inner.threads == {"cgd-log-writer"}


def test_a_failing_background_write_stops_the_run_instead_of_losing_points():
    cb = background_log.Background(_Recorder(fail_at=2))
    for step in range(4):
        cb.on_log(None, object(), None, logs={"step": step})
    with pytest.raises(RuntimeError, match="log writer failed"):
        cb.on_save(None, object(), None)
