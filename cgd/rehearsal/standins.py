"""Small stand-ins for the paper's hub models, built here so a rehearsal never downloads one.

A stand-in keeps what the pipeline's code paths depend on and nothing else: the architecture
(Llama, Mixtral's mixture of experts, OLMo-2, Qwen2), the chat template and whether it takes a
system turn (or no template at all: a base model, the plain layout), the special tokens and which
of them end a turn, s1.1's think markers, the number of positions, whether the tokenizer adds BOS
itself and whether embeddings are tied. Widths are tiny (2 layers, 128 wide, heads of 64: vLLM's CPU
attention has no kernel for smaller heads) and the vocabulary is a byte-level BPE of ~1k tokens.

Random weights alone would never write "Conclusion: wrong" or a `\\boxed{}` answer, and then no
critique is labelled, the mixture ablation has nothing to draw and no CGD row survives stage 04. So
after random initialisation each stand-in takes a few seconds of training on a scripted corpus
(`scripted_corpus`): the project's own prompts answered in the forms the pipeline parses, in the
family's own rendering. What it writes is nonsense; its shape is real.

The templates are the models' own: LLaMA-3.1/3.3 and Qwen2.5 (s1.1's base) as TRL ships copies of
them (trl/chat_templates, kept there to recognise these models), Qwen2.5-Math's as Qwen2.5's with its
math system turn, Mixtral-8x7B-Instruct-v0.1's and OLMo-2-1124-Instruct's from their tokenizer_config.json.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cgd.distill import prompts

# mistralai/Mixtral-8x7B-Instruct-v0.1 tokenizer_config.json: refuses a system turn.
MIXTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

# allenai/OLMo-2-1124-{7,13}B-Instruct tokenizer_config.json (the Tulu-3 layout; BOS = EOS).
OLMO2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<|system|>\n' + message['content'] + '\n' }}{% elif message['role'] == 'user' %}"
    "{{ '<|user|>\n' + message['content'] + '\n' }}{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\n'  + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ '<|assistant|>\n'  + message['content'] + eos_token }}{% endif %}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}{% endfor %}")


def _trl_template(name: str) -> str:
    return resources.files("trl").joinpath("chat_templates", f"{name}.jinja").read_text()


# Qwen2.5's template with another default system turn: Qwen2.5-Math's tokenizer_config.json ships
# Qwen2.5's (tools and all) but, without a system message, opens with this one.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SYSTEMS = {"math": "Please reason step by step, and put your final answer within \\\\boxed{}."}


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # transformers config: llama | mixtral | olmo2 | qwen2
    template: str | None  # a callable name for TRL's copies ("trl:llama3_1"), a template, or None (base)
    specials: tuple[str, ...]  # the real tokenizer's special tokens that the template or stop uses
    bos: str | None
    eos: str  # the tokenizer's eos_token
    stop: tuple[str, ...]  # generation_config.json eos_token_id (what ends generation)
    pad: str | None
    positions: int
    config: dict = field(default_factory=dict)  # rope, ties, experts: as the real config.json
    adds_bos: bool = False  # the tokenizer prepends BOS when encoding (LLaMA-3, Mixtral do)
    think: tuple[str, str] | None = None  # s1.1: text before the reasoning, before the answer

    def chat_template(self) -> str | None:
        if self.template and self.template.startswith("trl:"):
            name, _, system = self.template[4:].partition("+")
            text = _trl_template(name)
            if system:  # "trl:qwen2_5+math": the same template, another default system turn
                assert QWEN_DEFAULT_SYSTEM in text, f"TRL's {name} template no longer has Qwen's default system turn"
                text = text.replace(QWEN_DEFAULT_SYSTEM, SYSTEMS[system])
            return text
        return self.template


_LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>")
_LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_scaling": {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}, "tie_word_embeddings": False}
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

FAMILIES = {
    "llama3-instruct": Family("llama3-instruct", "llama", "trl:llama3_1", _LLAMA3_SPECIALS,
                              "<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
                              None, 131072, _LLAMA3_ROPE, adds_bos=True),
    "llama3-base": Family("llama3-base", "llama", None, _LLAMA3_SPECIALS, "<|begin_of_text|>",
                          "<|end_of_text|>", ("<|end_of_text|>",), None, 131072, _LLAMA3_ROPE, adds_bos=True),
    "mixtral-instruct": Family("mixtral-instruct", "mixtral", MIXTRAL_TEMPLATE, ("<unk>", "<s>", "</s>"),
                               "<s>", "</s>", ("</s>",), None, 32768,
                               {"rope_theta": 1e6, "num_local_experts": 8, "num_experts_per_tok": 2,
                                "sliding_window": None, "tie_word_embeddings": False}, adds_bos=True),
    "olmo2-instruct": Family("olmo2-instruct", "olmo2", OLMO2_TEMPLATE, ("<|endoftext|>", "<|pad|>"),
                             "<|endoftext|>", "<|endoftext|>", ("<|endoftext|>",), "<|pad|>", 4096,
                             {"rope_theta": 500000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}),
    "s1.1": Family("s1.1", "qwen2", "trl:qwen2_5", _QWEN_SPECIALS, None, "<|im_end|>",
                   ("<|im_end|>", "<|endoftext|>"), "<|endoftext|>", 32768,
                   {"rope_theta": 1e6, "use_sliding_window": False, "tie_word_embeddings": False},
                   think=("<|im_start|>think\n", "<|im_start|>answer\nAnswer: ")),  # as s1.1 writes it
    # Qwen2.5's instruct models (s1.1's base, without its think markers)
    "qwen2.5-instruct": Family("qwen2.5-instruct", "qwen2", "trl:qwen2_5", _QWEN_SPECIALS, None, "<|im_end|>",
                               ("<|im_end|>", "<|endoftext|>"), "<|endoftext|>", 32768,
                               {"rope_theta": 1e6, "use_sliding_window": False, "tie_word_embeddings": True}),
    # Qwen2.5-Math base (the release's cross-family student): Qwen2.5's chat template with the math system
    # turn, but a base model's EOS and generation_config: <|endoftext|> only, so its turns end with a token
    # (<|im_end|>) that does not stop it (the profile's student.stop_tokens). 4096 positions, RoPE theta 1e4.
    "qwen2.5-math": Family("qwen2.5-math", "qwen2", "trl:qwen2_5+math", _QWEN_SPECIALS, None, "<|endoftext|>",
                           ("<|endoftext|>",), "<|endoftext|>", 4096,
                           {"rope_theta": 10000.0, "use_sliding_window": False, "sliding_window": 4096,
                            "tie_word_embeddings": False}),
    # Mistral-7B-Instruct-v0.1, Mixtral's dense sibling: the same [INST] layout and tokens (the stand-in
    # reuses Mixtral-v0.1's template; Mistral's own tokenizer_config.json was not read here)
    "mistral-instruct": Family("mistral-instruct", "mistral", MIXTRAL_TEMPLATE, ("<unk>", "<s>", "</s>"),
                               "<s>", "</s>", ("</s>",), None, 32768,
                               {"rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False},
                               adds_bos=True),
}

# Hub id -> (family, whether the real model ties its embeddings, layers). Sizes differ so a
# student and its teacher are different models, as in the paper.
HUB_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": ("llama3-instruct", {}),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama3-instruct", {"num_hidden_layers": 3}),
    "meta-llama/Llama-3.1-8B": ("llama3-base", {}),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("mixtral-instruct", {}),
    "allenai/OLMo-2-1124-7B-Instruct": ("olmo2-instruct", {}),
    "simplescaling/s1.1-3B": ("s1.1", {"tie_word_embeddings": True}),  # Qwen2.5-3B ties them
    "simplescaling/s1.1-32B": ("s1.1", {"num_hidden_layers": 3}),
    # The paper profiles' second flaw source (ablations.flaw_source, not from the paper): a smaller
    # model of each student's family. LLaMA-3.2 ties its embeddings and stretches RoPE 32x.
    "meta-llama/Llama-3.2-3B-Instruct": ("llama3-instruct", {"tie_word_embeddings": True, "rope_scaling": {
        **_LLAMA3_ROPE["rope_scaling"], "factor": 32.0}}),
    "meta-llama/Llama-3.2-3B": ("llama3-base", {"tie_word_embeddings": True, "rope_scaling": {
        **_LLAMA3_ROPE["rope_scaling"], "factor": 32.0}}),
    "Qwen/Qwen2.5-1.5B-Instruct": ("qwen2.5-instruct", {}),
    "Qwen/Qwen2.5-Math-7B": ("qwen2.5-math", {}),
    "Qwen/Qwen2.5-Math-1.5B": ("qwen2.5-math", {"tie_word_embeddings": True}),  # its flaw source; 1.5B ties them
    # A model behind an API (a teacher with backend openai) has no public shape: its stand-in is a chat
    # model of a family the rehearsal already builds, served locally, only so the stages run.
    "claude-3-7-sonnet-20250219": ("qwen2.5-instruct", {"num_hidden_layers": 3}),
    "mistralai/Mistral-7B-Instruct-v0.1": ("mistral-instruct", {}),
    # OLMo-2's 1B (April 2025); the stand-in reuses the 1124 models' template (its own was not read here)
    "allenai/OLMo-2-0425-1B-Instruct": ("olmo2-instruct", {}),
}


def family_of(hub_id: str) -> tuple[Family, dict]:
    if hub_id not in HUB_MODELS:
        raise KeyError(f"no stand-in for {hub_id}; known: {', '.join(HUB_MODELS)} (add it to "
                       "cgd/rehearsal/standins.py HUB_MODELS with its family)")
    name, overrides = HUB_MODELS[hub_id]
    return FAMILIES[name], overrides


# ---------------------------------------------------------------- scripted corpus


# Two openings a student writes (which one, the question's first word decides: `_verdict`), and the
# verdict a teacher gives each: the mark opens the answer, where a two-layer model learns to see it in
# a few seconds, so stage 03 labels some answers right and some wrong, as the mixture ablation needs.
OPENINGS = {"right": "We compute step by step.", "wrong": "Let us guess quickly."}


def _verdict(question: str) -> str:
    """The opening a stand-in student writes for `question`: fixed by its first word (a stable
    hash; one token for a two-layer model to key on), so greedy decoding, as the paper profiles run
    stage 02, still answers some questions each way."""
    return ("right", "wrong")[zlib.crc32(question.split(" ", 1)[0].encode()) % 2]


def _answer(rng: random.Random, family: Family, verdict: str, garbled: bool = False) -> str:
    """A boxed answer opening with `verdict`'s mark. Garbled, as a sampled stand-in writes: the
    words after the opening shuffled and cut short; the opening stays, so the verdict still shows."""
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    op, value = rng.choice([("+", a + b), ("*", a * b), ("-", a - b)])
    words = f"First, {a} {op} {b} = {value}. So the final answer is $\\boxed{{{value}}}$.".split()
    if garbled:
        rng.shuffle(words)
        words = words[:rng.randint(1, len(words))]
    return _think(rng, family, " ".join([OPENINGS[verdict], *words]))


def _think(rng: random.Random, family: Family, text: str) -> str:
    if family.think is None:
        return text
    start, answer = family.think
    return f"{start}Let me check the numbers once more. {rng.randint(1, 9)} steps.\n{answer}{text}"


def _critique(rng: random.Random, family: Family, verdict: str) -> str:
    if verdict == "right":
        body = "Each step of the solution checks out, and the arithmetic is correct."
    else:
        body = f"The second step is wrong: the product is {rng.randint(10, 99)}, not the value written."
    return _think(rng, family, f"{body}\n\nConclusion: {verdict}")


def scripted_corpus(questions: list[str], family: Family, seed: int, n: int = 480) -> list[list[dict]]:
    """Chats in the forms the pipeline parses: a student's boxed answer (rollout, evaluation), a
    critique ending in "Conclusion: right|wrong" (stage 03), its one-word follow-up and a refined boxed
    answer (stage 04). The student's opening (its verdict's mark) is fixed per question, so greedy
    decoding answers some questions each way. Half the answers critiqued are garbled, as a sampled
    stand-in's are, so the teacher writes a well-formed critique whatever it is shown. The prompts
    alternate between the two prompt sets (ours, the authors'), so a stand-in answers in either layout."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        q = questions[i % len(questions)]
        kind = i % 5
        # the student's opening follows the question; the answers a teacher judges take either
        # opening, so the teacher learns to read the answer, not the question
        verdict = _verdict(q) if kind in (0, 1) else rng.choice(["right", "wrong"])
        clean = _answer(rng, family, verdict)
        student = _answer(rng, family, verdict, garbled=True) if rng.random() < 0.5 else clean
        critique = _critique(rng, family, verdict)
        # both prompt sets (cgd/distill/prompts.py), alternating: a profile may run either
        pset = prompts.PROMPT_SETS[(i // 5) % len(prompts.PROMPT_SETS)]
        if kind in (0, 1):
            chats.append([*prompts.load("rollout", prompt_set=pset).render(question=q),
                          {"role": "assistant", "content": clean}])
        elif kind == 2:
            msgs = prompts.load("critique", prompt_set=pset).render(question=q, student_answer=student)
            chats.append([*msgs, {"role": "assistant", "content": critique}])
        elif kind == 3:
            msgs = prompts.load("refine", prompt_set=pset).render(question=q, student_answer=student, critique=critique)
            chats.append([*msgs, {"role": "assistant", "content": _answer(rng, family, "right")}])
        else:
            user = prompts.CONCLUSION_FOLLOWUP.format(question=q, student_answer=student, critique=critique)
            chats.append([{"role": "user", "content": user}, {"role": "assistant", "content": verdict}])
    return chats


# ---------------------------------------------------------------- building


def _tokenizer(family: Family, texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(family.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if family.adds_bos:  # as LLaMA-3's and Mixtral's tokenizers: BOS first on every encode
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B", special_tokens=[(family.bos, bos_id)])
    kwargs = {"eos_token": family.eos}
    if family.bos:
        kwargs["bos_token"] = family.bos
    if family.pad:
        kwargs["pad_token"] = family.pad
    if "<unk>" in family.specials:
        kwargs["unk_token"] = "<unk>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.chat_template = family.chat_template()
    return fast


def _config(family: Family, overrides: dict, tokenizer):
    from transformers import AutoConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in family.specials}
    base = {"vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": family.positions,
            "bos_token_id": ids.get(family.bos) if family.bos else None, "eos_token_id": ids[family.eos],
            "pad_token_id": ids.get(family.pad) if family.pad else None}
    extra = {**family.config, **overrides}
    if family.model_type == "mixtral":
        base["intermediate_size"] = 64  # per expert
    rope = extra.pop("rope_scaling", None)
    theta = extra.pop("rope_theta", None)
    config = AutoConfig.for_model(family.model_type, **{**base, **extra})
    if theta is not None or rope is not None:
        config.rope_parameters = {**(rope or {"rope_type": "default"}), "rope_theta": theta or 10000.0}
    return config, [ids[t] for t in family.stop]


def build(hub_id: str, out_dir: str | Path, questions: list[str], seed: int = 0, steps: int = 300) -> dict:
    """Write the stand-in for `hub_id` to `out_dir` (tokenizer, config, weights, generation
    config); returns what was built."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from cgd.generation import chat

    start = time.perf_counter()
    family, overrides = family_of(hub_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chats = scripted_corpus(questions, family, seed)
    raw = [m["content"] for c in chats for m in c]
    tokenizer = _tokenizer(family, raw * 2, vocab_size=1024)
    config, stop_ids = _config(family, overrides, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer.save_pretrained(out_dir)
    from transformers import AutoTokenizer

    renderer = chat.prepare(AutoTokenizer.from_pretrained(out_dir))  # plain / folded, as the pipeline renders
    # Loss on the answer only (the prompt's tokens are most of each chat): a few seconds suffice.
    ids = [(_encode(renderer, c[:-1], True), _encode(renderer, c, False)) for c in chats]
    losses = _train(model, ids, steps, seed, pad_id=config.eos_token_id)
    model.config.architectures = [type(model).__name__]
    model.to(torch.bfloat16).save_pretrained(out_dir)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
                     pad_token_id=config.pad_token_id).save_pretrained(out_dir)
    report = {"hub_id": hub_id, "family": family.name, "architecture": type(model).__name__,
              "layout": renderer.cgd_layout, "parameters": sum(p.numel() for p in model.parameters()),
              "vocab": len(tokenizer), "positions": family.positions, "train_steps": steps,
              "loss_first": round(losses[0], 3), "loss_last": round(losses[-1], 3),
              "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / "standin.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _encode(tokenizer, messages: list[dict], prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt, return_dict=False)
    return list(out if isinstance(out, list) else out["input_ids"])


def _train(model, ids: list[tuple[list[int], list[int]]], steps: int, seed: int, pad_id: int,
           batch: int = 8) -> list[float]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # linear warmup, then cosine to zero: the last steps sharpen what sampling draws from
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    losses = []
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(ids), (batch,), generator=gen).tolist()
        rows = [ids[i][1] for i in pick]
        width = max(map(len, rows))
        x = torch.full((batch, width), pad_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for j, r in enumerate(rows):
            x[j, :len(r)] = torch.tensor(r)
            start = len(ids[pick[j]][0])
            labels[j, start:len(r)] = torch.tensor(r[start:])
            mask[j, :len(r)] = 1
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses
