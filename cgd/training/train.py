"""Stage 05: fine-tune the student on one method's records with TRL's SFTTrainer.

One call of `train()` is one (method, seed) run. The loss is completion-only: TRL masks the
prompt of each prompt-completion record, so the student learns only what the method asks it to
write (paper Section 3.2). On CPU the run is in-process with bf16 autocast where the CPU has AMX
or AVX512-BF16; on GPUs `launch_command()` runs the same entry point under `accelerate launch`
with the DeepSpeed ZeRO-3 config named by `train.deepspeed`.

Checkpoints (`train.save_steps`) make a killed paper-scale run resumable; they carry a fingerprint
of the records and settings, and are removed once the final model is saved. A `snapshot_dir`
keeps the bf16 model after every epoch but the last (paper Fig. 6 evaluates each epoch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cgd.config import Params, ParamsError, TrainConfig
from cgd.generation import chat
from cgd.runtime import device, io, provenance, shards
from cgd.training import background_log, levers, records


@dataclass(frozen=True)
class BatchPlan:
    """The requested global batch split over devices and gradient-accumulation steps. With
    `train.per_device_batch_size: auto`, also the token budget and the longest record it was fit to."""

    global_batch: int
    per_device: int
    world_size: int
    accumulation: int
    token_budget: int | None = None
    longest_record: int | None = None


def batch_plan(cfg: TrainConfig, world_size: int, longest: int | None = None) -> BatchPlan:
    """Split `train.global_batch_size` as per-device rows x accumulation x world size.

    `per_device_batch_size: auto` picks, per run, the most rows per micro-batch that divide each
    device's share of the global batch and whose padded size (rows x `longest`, the run's longest
    record in tokens) stays within `train.tokens_per_device_batch`. The global batch (Table 5's
    64), the optimizer steps and the loss (TRL divides by the completion tokens of the whole
    accumulated batch) are unchanged; only the accumulation split moves, and with it which rows the
    length-grouped sampler puts side by side. Short records (SFT, CFT) then fill a GPU in a few
    large micro-batches instead of many of two rows; the budget bounds the padded worst case as
    rows x max_length did. A record longer than the budget trains alone."""
    per_device, auto = cfg.per_device_batch_size, cfg.per_device_batch_size == "auto"
    if auto:
        if cfg.global_batch_size % world_size:
            raise ParamsError("train.global_batch_size",
                              f"({cfg.global_batch_size}) is not a multiple of the world size ({world_size})",
                              "pick a global batch divisible by the number of devices")
        if longest is None:
            raise ValueError("per_device_batch_size auto needs the run's longest record (tokens)")
        share = cfg.global_batch_size // world_size
        per_device = max((d for d in range(1, share + 1)
                          if share % d == 0 and d * longest <= cfg.tokens_per_device_batch), default=1)
    per_step = per_device * world_size
    if cfg.global_batch_size % per_step:
        raise ParamsError(
            "train.global_batch_size",
            f"({cfg.global_batch_size}) is not a multiple of per_device_batch_size x world size "
            f"({per_device} x {world_size})",
            "pick a global batch divisible by both, or change per_device_batch_size")
    return BatchPlan(cfg.global_batch_size, per_device, world_size, cfg.global_batch_size // per_step,
                     cfg.tokens_per_device_batch if auto else None, longest if auto else None)


CFT_DATA = "data/04_cft/cft_data.jsonl"  # stage cft_data: WebInstruct-CFT rows for CFT*


def data_for(method: str, data_path: str) -> str:
    """The rows a method trains on: CFT* (cft_gpt4o) on WebInstruct-CFT's GPT-4o critiques, every
    other method on this run's stage-04 rows (or the file a sweep point names)."""
    return CFT_DATA if method == "cft_gpt4o" else data_path


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_name(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def sft_config(cfg: TrainConfig, plan: BatchPlan, seed: int, output_dir: str, bf16: bool,
               use_cpu: bool, lever_set: levers.Levers | None = None):
    from trl import SFTConfig

    lever_set = lever_set or levers.resolve(cfg, cuda=not use_cpu, liger_missing=levers.liger_available())

    return SFTConfig(
        output_dir=output_dir, seed=seed, data_seed=seed,
        learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=plan.per_device, gradient_accumulation_steps=plan.accumulation,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, optim=cfg.optimizer,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing, bf16=bf16, use_cpu=use_cpu,
        completion_only_loss=True, **levers.sft_overrides(lever_set, cfg.max_length),
        # Batches of similar length waste little compute on padding (the main CPU speed-up after bf16).
        train_sampling_strategy="group_by_length",
        # The first step is logged too: a run shorter than logging_steps (a small mixture point, a
        # rehearsal) still has a loss curve for Fig. 8 (found by rehearsing llama8b-webinstruct:
        # Fig. 8 read "not run" at logging_steps 10 with 5 steps), and every curve starts at step 1.
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none",
        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
        save_total_limit=1,
    )


def score_completion_tokens_only() -> None:
    """Make TRL's fused LM head score only the completion tokens on CPU too.

    TRL projects through the LM head only the positions in the loss on Triton devices (CUDA, XPU
    with Triton installed), but every position elsewhere, to keep tile shapes fixed for graph
    compilers (Neuron). Eager CPU and CUDA kernels have no such constraint, and a CGD record is mostly prompt (question, answer, critique)
    and padding: scoring them all, with an fp32 backward over a 49k vocabulary, was about a third of
    a CPU step. The loss is the same sum over the same tokens. Patched once, where TRL reads the
    flag (`trl.trainer.utils._use_triton`); the kernels keep their own check and run torch ops.
    """
    import trl.trainer.utils as trl_utils

    decide = trl_utils._use_triton
    if getattr(decide, "cgd_compact_on_cpu", False):
        return

    def compact(device) -> bool:  # eager CPU and CUDA kernels take any number of tokens
        return device.type in ("cpu", "cuda") or decide(device)

    compact.cgd_compact_on_cpu = True
    trl_utils._use_triton = compact


class CountingCollator:
    """Wraps TRL's collator to count every token the model sees: all, non-pad, and in the loss."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens = self.non_pad = self.loss_tokens = self.largest = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.tokens += batch["input_ids"].numel()
        self.largest = max(self.largest, batch["input_ids"].numel())  # padded; bounded by the plan
        mask = batch.get("attention_mask")
        self.non_pad += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        self.loss_tokens += int((batch["labels"] != -100).sum())
        return batch


def _callbacks(live_dir: Path, resume: bool, main: bool):
    from dvclive import Live
    from transformers import TrainerCallback
    from transformers.integrations import DVCLiveCallback

    class Throughput(TrainerCallback):
        """Adds tokens/s (non-pad, from TRL's running count) and normalized progress to each log."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.perf_counter(), 0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "num_tokens" not in logs:
                return
            now, seen = time.perf_counter(), logs["num_tokens"]
            logs["tokens_per_second"] = (seen - self.last[1]) / max(now - self.last[0], 1e-9)
            logs["progress"] = state.global_step / max(state.max_steps, 1)
            self.last = (now, seen)

    if not main:  # one writer of the curves: the global main process (ranks share the filesystem)
        return [Throughput()], None
    # A resumed run appends to the curves it began; a fresh run starts them over.
    live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume)
    # The curves are written off the training loop (background_log): a logged step costs the
    # device only the Trainer's own loss sync, at any logging_steps.
    return [Throughput(), background_log.Background(DVCLiveCallback(live=live))], live


class StepClock:
    """Times the run from the end of its first optimizer step to the end of training.

    The first step pays one-off costs (CUDA context and cuBLAS handles, Triton compiling TRL's
    LM-head kernels, the allocator growing its pools) that a paper-scale run amortizes over
    thousands of steps but a short benchmark does not. `tokens()` reads TRL's count of non-pad
    tokens (summed over ranks, counted as each micro-batch is scored), so the steady rate is exact
    where the collator's count runs one prefetched batch ahead. Two device syncs per run."""

    def __init__(self, tokens, sync):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if clock.first is None:
                    clock.first = clock._now(state)

            def on_train_end(self, args, state, control, **kwargs):
                clock.last = clock._now(state)

        self.tokens, self.sync, self.callback = tokens, sync, Callback()
        self.start = self.first = self.last = None

    def _now(self, state) -> tuple[float, int, int]:
        self.sync()
        return time.perf_counter(), int(self.tokens()), state.global_step

    def report(self) -> dict:
        if self.start is None or self.first is None or self.last is None:
            return {"first_step_s": None, "steady_non_pad_tokens_per_s": None}
        seconds, tokens, steps = (b - a for a, b in zip(self.first, self.last))
        return {"first_step_s": round(self.first[0] - self.start, 3),
                # None for a one-step run: nothing is left once its first step is set aside
                "steady_non_pad_tokens_per_s": round(tokens / seconds, 1) if steps > 0 and seconds > 0 else None}


def _fingerprint(params: Params, method: str, seed: int, recs: list[dict]) -> str:
    return shards.fingerprint({"train": dataclasses.asdict(params.train), "student": params.student.model,
                               "method": method, "seed": seed, "records": recs})


def _resume_point(ckpt_dir: Path, fingerprint: str) -> str | None:
    """The checkpoint to resume from, agreed by every rank before any is deleted.

    Ranks on several nodes share `ckpt_dir`: they must hold the same records and settings (else the
    run stops here, deleting nothing), and only the main process removes stale checkpoints, after
    which the others look."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    seen = set(gather_object([fingerprint]))
    if len(seen) > 1:
        raise RuntimeError(f"ranks disagree on the training fingerprint ({len(seen)} values): their "
                           "params, records or code differ; give every node the same checkout and data")
    resume = _latest_checkpoint(ckpt_dir, fingerprint, delete_stale=state.is_main_process)
    state.wait_for_everyone()
    return resume if state.is_main_process else _latest_checkpoint(ckpt_dir, fingerprint, delete_stale=False)


def _latest_checkpoint(ckpt_dir: Path, fingerprint: str, delete_stale: bool) -> str | None:
    stamp = ckpt_dir / "fingerprint.txt"
    if not stamp.exists() or stamp.read_text() != fingerprint:
        if delete_stale:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # stale: other records or settings
        return None
    # trainer_state.json is the last file a checkpoint gets: one without it was cut off mid-save.
    found = sorted((p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                   key=lambda p: int(p.name.split("-")[1]))
    return str(found[-1]) if found else None


def _epoch_snapshots(save):
    """A callback calling `save(epoch)` after each epoch but the last, which the final save covers."""
    from transformers import TrainerCallback

    class EpochSnapshots(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if round(state.epoch) < args.num_train_epochs:
                save(round(state.epoch))

    return EpochSnapshots()


def _step_snapshots(every: int, save):
    """A callback calling `save(step)` every `every` optimizer steps before the last, which the final save covers."""
    from transformers import TrainerCallback

    class StepSnapshots(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0 and state.global_step < state.max_steps:
                save(state.global_step)

    return StepSnapshots()


def train(params: Params, method: str, seed: int, data_path: str, model_out: str, live_dir: str,
          checkpoint_dir: str, snapshot_dir: str | None = None) -> dict:
    """Train one (method, seed) run; writes the bf16 model folder and returns the final metrics.
    With `snapshot_dir`, <snapshot_dir>/epoch<k> holds the model after epoch k < train.epochs."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    cfg = params.train
    rows = list(io.read_jsonl(data_path))
    t = records.templates(params.rollout, params.critique, params.train.record_layout)
    recs, build_report = records.build(rows, method, t)
    tokenizer = chat.prepare(AutoTokenizer.from_pretrained(params.student.model))
    recs, fit_report = records.fit_length(recs, tokenizer, cfg.max_length, cfg.overlong)
    if not recs:
        raise RuntimeError(f"{method}: no training records left ({build_report}, {fit_report}); "
                           "see data/04_refine and the stage-04 report")

    plan = batch_plan(cfg, world_size(), longest=fit_report["max_tokens"])
    cuda = torch.cuda.is_available()
    if not cuda:
        device.keep_freed_memory()
    score_completion_tokens_only()
    bf16 = device.bf16_supported()
    ckpt_dir = Path(checkpoint_dir)
    # SFTConfig first: under DeepSpeed ZeRO-3 it must exist before the model loads, so the
    # weights are partitioned as they load instead of materialized whole on every rank.
    lever_set = levers.resolve(cfg, cuda, liger_missing=levers.liger_available())
    args = sft_config(cfg, plan, seed, str(ckpt_dir), bf16=bf16, use_cpu=not cuda, lever_set=lever_set)
    deepspeed = args.deepspeed_plugin is not None  # set when `accelerate launch` runs DeepSpeed
    # fp32 master weights with bf16 autocast; DeepSpeed keeps its own fp32 copy of bf16 weights.
    dtype = torch.bfloat16 if deepspeed else torch.float32
    model = AutoModelForCausalLM.from_pretrained(params.student.model, dtype=dtype,
                                                 attn_implementation=lever_set.attn_implementation)

    fingerprint = _fingerprint(params, method, seed, recs)
    resume = _resume_point(ckpt_dir, fingerprint) if cfg.save_steps else None
    callbacks, live = _callbacks(Path(live_dir), resume is not None, main=args.process_index == 0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(recs),
                         processing_class=tokenizer, callbacks=callbacks)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    if snapshot_dir:
        trainer.add_callback(_epoch_snapshots(
            lambda epoch: _save(trainer, tokenizer, Path(snapshot_dir) / f"epoch{epoch}", deepspeed, final=False)))
    # Step snapshots (eval.checkpoint's candidates) go beside the model folder while it trains, since
    # the final save replaces that folder, and move into <model_out>/steps after it. A resumed run
    # keeps the snapshots written before it was killed.
    steps_dir = Path(model_out).with_name(Path(model_out).name + ".steps")
    if cfg.snapshot_steps:
        trainer.add_callback(_step_snapshots(
            cfg.snapshot_steps,
            lambda step: _save(trainer, tokenizer, steps_dir / f"step{step}", deepspeed, final=False)))
    if cfg.save_steps and trainer.is_world_process_zero():
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "fingerprint.txt").write_text(fingerprint)
    clock = StepClock(lambda: trainer._total_train_tokens,
                      torch.cuda.synchronize if cuda else (lambda: None))
    trainer.add_callback(clock.callback)
    start = clock.start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start

    _save(trainer, tokenizer, Path(model_out), deepspeed)
    if trainer.is_world_process_zero() and steps_dir.is_dir():
        os.replace(steps_dir, Path(model_out) / "steps")
    trainer.accelerator.wait_for_everyone()
    totals = trainer.accelerator.reduce(
        torch.tensor([counter.tokens, counter.non_pad, counter.loss_tokens], dtype=torch.float64,
                     device=trainer.accelerator.device), reduction="sum").tolist()
    metrics = {
        "method": method, "seed": seed, "steps": trainer.state.global_step,
        "epochs": cfg.epochs, "records": len(recs), "resumed_from": resume,
        "tokens": int(totals[0]), "non_pad_tokens": int(totals[1]), "loss_tokens": int(totals[2]),
        "padding_fraction": round(1 - totals[1] / totals[0], 4) if totals[0] else 0.0,
        "largest_micro_batch_tokens": counter.largest,  # this rank's; padding included
        "wall_s": round(wall, 2), "non_pad_tokens_per_s": round(totals[1] / wall, 1),
        **clock.report(),
        "train_loss": round(result.training_loss, 5),
        "final_loss": _last_loss(trainer.state.log_history),
        "loss_trend": loss_trend(trainer.state.log_history),  # first vs last 20% of logged steps
        "precision": "bf16" if bf16 else "fp32", "device": "cuda" if cuda else "cpu",
        "deepspeed": deepspeed, "batch": dataclasses.asdict(plan), "levers": lever_set.as_dict(),
        "data": build_report, "length": fit_report,
    }
    if trainer.is_world_process_zero():
        metrics["provenance"] = provenance.collect({"student": params.student.model, "trained": model_out})
        live.summary.update(metrics)
        live.make_summary()
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the run finished: nothing left to resume
    return metrics


def _last_loss(history: list[dict]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    return round(losses[-1], 5) if losses else None


def loss_trend(history: list[dict], share: float = 0.2) -> dict:
    """Did the loss fall? The mean logged loss over the first and the last `share` of the logged
    steps (at least one step each), and their difference: a curve of noise around a flat line
    reads as a difference near 0, a run that trained as a clearly negative one."""
    losses = [h["loss"] for h in history if "loss" in h]
    if len(losses) < 2:
        return {"logged_steps": len(losses), "first": None, "last": None, "change": None, "fell": None}
    k = max(1, round(share * len(losses)))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return {"logged_steps": len(losses), "share": share, "first": round(first, 5), "last": round(last, 5),
            "change": round(last - first, 5), "fell": last < first}


def _save(trainer, tokenizer, out: Path, deepspeed: bool, final: bool = True) -> None:
    """The model as a plain bf16 HF folder, written next to `out` and moved into place. The final
    save casts the trained model itself; a mid-run snapshot casts a copy, so training goes on in fp32."""
    import copy

    import torch

    tmp = out.with_name(out.name + ".tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if deepspeed:
        trainer.save_model(str(tmp))  # gathers the ZeRO-3 shards into 16-bit weights on rank 0
    elif trainer.is_world_process_zero():
        model = trainer.model if final else copy.deepcopy(trainer.model)
        model.to(torch.bfloat16).save_pretrained(tmp)
    if trainer.is_world_process_zero():
        out.parent.mkdir(parents=True, exist_ok=True)
        (tmp / "training_args.bin").unlink(missing_ok=True)  # pickled args: not a model file
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    trainer.accelerator.wait_for_everyone()


def launch_command(params: Params, method: str, seed: int, data_path: str, model_out: str,
                   live_dir: str, checkpoint_dir: str, params_file: str,
                   overrides: dict | None = None, num_gpus: int | None = None,
                   snapshot_dir: str | None = None, num_machines: int = 1, machine_rank: int = 0,
                   main_process_ip: str | None = None, main_process_port: int = 29500) -> list[str]:
    """`accelerate launch` with the repo's DeepSpeed config (train.deepspeed): over the local GPUs,
    or, with `num_machines` > 1, this node's part of a run that every node starts the same way
    (`num_gpus` per node; the config's standard launcher: torchrun rendezvous at node 0, no ssh)."""
    import torch

    gpus = num_gpus if num_gpus is not None else torch.cuda.device_count()
    nodes = []
    if num_machines > 1:
        if not main_process_ip:
            raise ValueError("a run on several nodes needs main_process_ip (node 0's address)")
        nodes = ["--num_machines", str(num_machines), "--machine_rank", str(machine_rank),
                 "--main_process_ip", main_process_ip, "--main_process_port", str(main_process_port)]
    return ["accelerate", "launch", "--config_file", params.train.deepspeed,
            "--num_processes", str(gpus * num_machines), *nodes,
            "-m", "cgd", "train", "--params", params_file, "--overrides", json.dumps(overrides or {}),
            "--method", method, "--seed", str(seed), "--data", data_path, "--model-out", model_out,
            "--live-dir", live_dir, "--checkpoint-dir", checkpoint_dir,
            *(["--snapshot-dir", snapshot_dir] if snapshot_dir else [])]
