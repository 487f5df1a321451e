"""The paper's Appendix C probes: predictive entropy (Table 9), gradient norm (Table 10), attention by
prompt section (Figs. 9-11) and the counterfactual-critique probe (Table 11).

Every probe reads a model on diagnostic rows in CGD's training layout (question, student answer,
critique; `records.cgd`), rendered with the model's chat template:

- entropy: one forward pass; the Shannon entropy (nats) of the next-token distribution at the
  position where the refined answer begins;
- gradient norm: one forward and backward pass against the refined answer (the completion-only
  loss of training), with and without the critique in the prompt; the total L2 norm of the gradient
  of every parameter, one row at a time;
- attention: greedy generation with eager attention; at every generated token and layer, the
  share of attention (mean over heads) on the Problem, Student Answer and Critique tokens and on
  everything else (template tokens, labels, the answer generated so far). Shares are reduced as the
  step runs, so no step's full matrices are kept;
- counterfactual: the model answers in the CGD layout with the row's own critique and with a
  critique of a different problem (drawn with the seed, never the row's own), each answer graded.

Token spans come from the tokenizer's offsets over the rendered template, so each section's tokens
are exactly the ones its text produced.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from cgd.generation import chat
from cgd.training import records

SECTIONS = ("problem", "student_answer", "critique", "other")


def entropy(logits) -> float:
    """Shannon entropy in nats of softmax(logits) over the last dimension (a 1-d tensor)."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    return float(-(logp.exp() * logp).sum())


# ---------------------------------------------------------------- the CGD layout, with its spans


@dataclass(frozen=True)
class Rendered:
    ids: list[int]
    section: np.ndarray  # per prompt token: index into SECTIONS


def cgd_messages(row: dict, critique: str | None = None, with_critique: bool = True) -> list[dict]:
    """The CGD training prompt for a row (its own critique, another one, or none: CGD w/o critique), in
    the layout the models trained on: the row's `record_layout` (set by `diagnostic_rows` from
    train.record_layout), Appendix D when it has none."""
    t = records.templates(record_layout=row.get("record_layout", "appendix_d"))
    if not with_critique:
        return records.cgd_no_critique(row, t)["prompt"]
    return records.cgd({**row, "critique": row["critique"] if critique is None else critique}, t)["prompt"]


def render(tokenizer, messages: list[dict], fields: dict[str, str]) -> Rendered:
    """Prompt token ids (chat template, assistant turn opened) and each token's section: a token is
    in a section when its characters (but a leading space) lie inside that field's text in the
    rendered prompt."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    user = messages[-1]["content"]
    base = text.rindex(user)  # the user turn, verbatim inside the template
    spans = {}
    for name, value in fields.items():
        start = user.index(value) if value else -1
        if start < 0:
            continue
        spans[name] = (base + start, base + start + len(value))
    section = np.full(len(enc["input_ids"]), SECTIONS.index("other"), dtype=np.int8)
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if text[a:b].strip():  # byte-level BPE tokens carry the space before a word
            a = b - len(text[a:b].lstrip())
        for name, (lo, hi) in spans.items():
            if b > a and a >= lo and b <= hi:
                section[i] = SECTIONS.index(name)
    return Rendered(list(enc["input_ids"]), section)


def render_row(tokenizer, row: dict, critique: str | None = None) -> Rendered:
    critique = row["critique"] if critique is None else critique
    return render(tokenizer, cgd_messages(row, critique),
                  {"problem": row["question"], "student_answer": row["student_answer"], "critique": critique})


# ---------------------------------------------------------------- Table 9: entropy


def first_token_entropy(model, tokenizer, row: dict) -> float:
    """Entropy of the model's next token after the CGD prompt: the first token of the refined answer."""
    import torch

    ids = torch.tensor([render_row(tokenizer, row).ids], device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1]  # the LM head at one position only
    return entropy(logits)


# ---------------------------------------------------------------- Table 10: gradient norm


def gradient_norm(model, tokenizer, row: dict, with_critique: bool) -> float:
    """Total L2 norm of d(loss)/d(parameters) for the refined answer given the prompt, the loss over
    the answer's tokens only (training's completion-only loss). Gradients are freed afterwards."""
    import torch

    record = {"prompt": cgd_messages(row, with_critique=with_critique),
              "completion": [{"role": "assistant", "content": row["refined_answer"]}]}
    prompt_ids, full_ids = records.token_ids(record, tokenizer)
    ids = torch.tensor([full_ids], device=model.device)
    n = len(full_ids) - len(prompt_ids)
    model.zero_grad(set_to_none=True)
    # The LM head runs only where the loss is (the n + 1 last positions, the last predicting past
    # the end): prompt positions add nothing to the loss or its gradients, and their logits over
    # the whole vocabulary were most of a row's time after the model body's.
    logits = model(input_ids=ids, logits_to_keep=n + 1).logits[0, :-1].float()
    loss = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids):])
    loss.backward()
    total = math.sqrt(sum(float(p.grad.float().pow(2).sum()) for p in model.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return total


# ---------------------------------------------------------------- Figs. 9-11: attention by section


def attention_shares(model, tokenizer, row: dict, max_new_tokens: int) -> np.ndarray:
    """Greedy generation from the CGD prompt; returns shares[step, layer, section] (sections as in
    SECTIONS, summing to 1), one step per generated token. The model must use eager attention."""
    import torch

    rendered = render_row(tokenizer, row)
    prompt_len = len(rendered.ids)
    ids = torch.tensor([rendered.ids], device=model.device)
    masks = [torch.tensor(rendered.section == k, device=model.device) for k in range(3)]
    eos = set(_eos_ids(model, tokenizer))
    steps = []
    with torch.inference_mode():
        # The prompt but its last token goes in without attention weights (all layers' full
        # prefill matrices at once would not fit at paper scale); from then on each step has one query.
        past = model(input_ids=ids[:, :-1], use_cache=True).past_key_values if prompt_len > 1 else None
        next_input = ids[:, -1:]
        for _ in range(max_new_tokens):
            out = model(input_ids=next_input, past_key_values=past, use_cache=True, output_attentions=True)
            past = out.past_key_values
            # each layer: [1, heads, query, keys]; the last query is the token being predicted
            per_layer = []
            for att in out.attentions:
                weights = att[0, :, -1, :].float().mean(dim=0)  # mean over heads -> [keys]
                prompt_part = weights[:prompt_len]
                shares = [float(prompt_part[m].sum()) for m in masks]
                per_layer.append(shares + [max(0.0, float(weights.sum()) - sum(shares))])
            steps.append(per_layer)
            token = int(out.logits[0, -1].argmax())
            if token in eos:
                break
            next_input = torch.tensor([[token]], device=model.device)
    return np.asarray(steps, dtype=np.float32)


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return [e for e in eos + [tokenizer.eos_token_id] if e is not None]


def phase_means(shares: np.ndarray, phases: int) -> np.ndarray:
    """[layer, section, phase]: mean shares over `phases` equal slices of a row's generation
    (Fig. 11's generation phases); a phase with no step is NaN."""
    steps = shares.shape[0]
    out = np.full((shares.shape[1], shares.shape[2], phases), np.nan, dtype=np.float32)
    for k in range(phases):
        lo, hi = (k * steps) // phases, ((k + 1) * steps) // phases
        if hi > lo:
            out[:, :, k] = shares[lo:hi].mean(axis=0)
    return out


# ---------------------------------------------------------------- Table 11: counterfactual critiques


def counterfactual_partners(ids: list[str], seed: int) -> dict[str, str]:
    """For each row, another row whose critique it is shown: a random derangement (no row keeps
    its own critique), reproducible for a seed."""
    if len(ids) < 2:
        raise ValueError("the counterfactual probe needs at least two rows (a critique of another problem)")
    rng = random.Random(seed)
    order = list(ids)
    rng.shuffle(order)
    # Rotating a shuffled order by one is a derangement: every row gets its successor's critique.
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


# ---------------------------------------------------------------- the stage: rows, models, probes


def diagnostic_rows(rows: list[dict], n: int, seed: int, record_layout: str = "appendix_d") -> list[dict]:
    """`n` rows with all three generations (status ok), drawn with the seed, in id order, each tagged
    with the training layout (`train.record_layout`) its CGD prompt is rendered in."""
    complete = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: r["id"])
    if len(complete) < 2:
        raise ValueError(f"the probes need at least 2 complete stage-04 rows; {len(complete)} have status ok")
    chosen = random.Random(seed).sample(complete, min(n, len(complete)))
    return [{**r, "record_layout": record_layout} for r in sorted(chosen, key=lambda r: r["id"])]


def load(path: str, eager: bool = False):
    """(model, tokenizer) on the device the stage runs on, bf16 where it is fast; eager attention
    when the weights are wanted (attention probes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cgd.runtime.device import device, keep_freed_memory, torch_dtype

    if device() == "cpu":
        keep_freed_memory()  # as in training: backward passes re-allocate the same large blocks
    kwargs = {"attn_implementation": "eager"} if eager else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype("auto"), **kwargs)
    return model.to(device()).eval(), chat.prepare(AutoTokenizer.from_pretrained(path))


def entropy_probe(model_paths: dict[str, str], rows: list[dict], resamples: int, seed: int) -> tuple[list, dict]:
    """Table 9: per-row first-token entropy of each model, and each model against CGD (paired)."""
    from cgd.runtime.progress import bar

    per_row = {}
    for name, path in model_paths.items():
        model, tok = load(path)
        per_row[name] = [first_token_entropy(model, tok, r) for r in bar(rows, desc=f"entropy {name}")]
        del model
    from cgd.evaluation import stats

    table = {}
    for name, values in per_row.items():
        entry = {"path": model_paths[name], "n": len(values), "mean": float(np.mean(values)),
                 "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}
        if "cgd" in per_row and name != "cgd":
            entry["vs_cgd"] = stats.paired_t(values, per_row["cgd"], resamples, seed)
        table[name] = entry
    samples = [{"id": r["id"], **{name: per_row[name][i] for name in per_row}} for i, r in enumerate(rows)]
    return samples, table


def gradient_probe(path: str, rows: list[dict], resamples: int, seed: int) -> tuple[list, dict]:
    """Table 10: the CGD model's gradient norm per row with and without the critique."""
    from cgd.evaluation import stats
    from cgd.runtime.progress import bar

    model, tok = load(path)
    model.train()  # dropout-free models: same numbers; gradients flow as in training
    samples = [{"id": r["id"], "with_critique": gradient_norm(model, tok, r, True),
                "without_critique": gradient_norm(model, tok, r, False)} for r in bar(rows, desc="gradient norm")]
    w = [s["with_critique"] for s in samples]
    wo = [s["without_critique"] for s in samples]
    table = {"path": path, "n": len(samples),
             "with_critique": {"mean": float(np.mean(w)), "sd": float(np.std(w, ddof=1)) if len(w) > 1 else None},
             "without_critique": {"mean": float(np.mean(wo)), "sd": float(np.std(wo, ddof=1)) if len(wo) > 1 else None},
             "with_minus_without": stats.paired_t(w, wo, resamples, seed)}
    table["reduction_pct"] = 100 * (1 - table["with_critique"]["mean"] / table["without_critique"]["mean"])
    return samples, table


def attention_probe(path: str, rows: list[dict], max_new_tokens: int, phases: int) -> tuple[dict, dict]:
    """Figs. 9-11: per row, shares[step, layer, section] of the CGD model's generation; and the
    summaries the figures and the metrics report (per-layer means, first-step shares, phase means)."""
    from cgd.runtime.progress import bar

    model, tok = load(path, eager=True)
    arrays = {r["id"]: attention_shares(model, tok, r, max_new_tokens) for r in bar(rows, desc="attention")}
    per_layer = np.stack([a.mean(axis=0) for a in arrays.values()])  # [row, layer, section]
    first = np.stack([a[0] for a in arrays.values()])
    by_phase = np.nanmean(np.stack([phase_means(a, phases) for a in arrays.values()]), axis=0)
    layers = per_layer.shape[1]
    summary = {"rows": len(arrays), "layers": layers, "sections": list(SECTIONS),
               "steps": [int(a.shape[0]) for a in arrays.values()],
               "mean_by_layer": per_layer.mean(axis=0).round(4).tolist(),
               "first_step_by_layer": first.mean(axis=0).round(4).tolist(),
               "phase_means_by_layer": {str(k): by_phase[k].round(4).tolist()
                                        for k in sorted({0, layers // 2, layers - 1})}}
    return arrays, summary


def counterfactual_probe(model_paths: dict[str, str], rows: list[dict], backend_factory, seed: int,
                         resamples: int) -> tuple[list, dict]:
    """Table 11: each model answers every row in the CGD layout with the row's critique (factual)
    and with another row's (counterfactual); answers graded against the row's reference answer."""
    from cgd.evaluation import stats
    from cgd.generation import Request, opened
    from cgd.grading.judge import is_correct

    partner = counterfactual_partners([r["id"] for r in rows], seed)
    by_id = {r["id"]: r for r in rows}
    samples = []
    for name, path in model_paths.items():
        requests = []
        for r in rows:
            requests.append(Request(f"{r['id']}|factual", cgd_messages(r)))
            requests.append(Request(f"{r['id']}|counterfactual",
                                    cgd_messages(r, critique=by_id[partner[r["id"]]]["critique"])))
        with opened(lambda: backend_factory(path), True) as (backend, _):
            out = backend.generate(requests, seed)
        for req, c in zip(requests, out):
            rid, condition = req.id.split("|")
            samples.append({"model": name, "id": rid, "condition": condition,
                            "critique_from": rid if condition == "factual" else partner[rid],
                            "answer": c.text, "finish_reason": c.finish_reason,
                            "correct": bool(is_correct(by_id[rid]["reference_answer"], c.text))})
    table = {}
    for name in model_paths:
        cells = {cond: [s["correct"] for s in samples if s["model"] == name and s["condition"] == cond]
                 for cond in ("factual", "counterfactual")}
        table[name] = {cond: stats.mean_ci(v, resamples, seed) for cond, v in cells.items()}
        table[name]["factual_minus_counterfactual"] = stats.paired_difference(
            cells["factual"], cells["counterfactual"], resamples, seed)
    return samples, table
