"""One prompt layout per model, whatever its tokenizer ships: `prepare(tokenizer)`.

Every local consumer of a model's prompt (vLLM and transformers generation through
`generation.chat_token_ids`, TRL training, the diagnostics, the record length check) renders the
same chat messages with the tokenizer's chat template, so one fix here reaches them all, and a
trained model saves the template it was trained with (`tokenizer.save_pretrained`):

- a base model without a chat template (LLaMA-3.1-8B for the paper's Table 3) gets
  `PLAIN_TEMPLATE`: the turns as plain text separated by blank lines, the answer on the line after
  "Answer:" (a newline, not a space, so the prompt's tokens are a prefix of the prompt and answer's)
  and closed by the EOS token, so training teaches the model where to stop;
- a template that refuses a system turn (Mixtral-8x7B-Instruct-v0.1, Mistral v0.1: "Conversation
  roles must alternate user/assistant/...") gets the system text folded into the first user turn,
  as Mistral recommends, before its own template runs.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PLAIN_TEMPLATE = (
    "{{- bos_token if bos_token else '' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- 'Answer:\n' + message['content'] + eos_token -}}"
    "{%- else -%}"
    "{{- message['content'] + '\n\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Answer:\n' -}}{%- endif -%}"
)

# Prepended to a template that refuses the system role: the system text becomes the first lines of
# the first user turn (top-level `set` rebinds `messages` for the template that follows).
FOLD_SYSTEM = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages|length > 1 and messages[1]['role'] == 'user' -%}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content'] + '\n\n' + messages[1]['content']}]"
    " + messages[2:] -%}"
    "{%- else -%}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content']}] + messages[1:] -%}"
    "{%- endif -%}"
    "{%- endif -%}"
)

_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def layout(tokenizer) -> str:
    """'plain' (no chat template), 'folded' (its template refuses a system turn), or 'chat'."""
    if not getattr(tokenizer, "chat_template", None):
        return "plain"
    try:
        tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - jinja2's TemplateError, raised by the template itself
        if "role" in str(exc).lower() or "system" in str(exc).lower():
            return "folded"
        raise
    return "chat"


def prepare(tokenizer):
    """The tokenizer with a chat template that renders the project's messages; returns it."""
    if getattr(tokenizer, "cgd_layout", None):
        return tokenizer
    kind = layout(tokenizer)
    if kind == "plain":
        tokenizer.chat_template = PLAIN_TEMPLATE
        log.info("%s has no chat template: using the plain-text layout", tokenizer.name_or_path)
    elif kind == "folded":
        tokenizer.chat_template = FOLD_SYSTEM + tokenizer.chat_template
        log.info("%s's template refuses a system turn: folding it into the first user turn",
                 tokenizer.name_or_path)
    tokenizer.cgd_layout = kind
    return tokenizer
