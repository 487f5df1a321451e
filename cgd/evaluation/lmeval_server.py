"""lm-eval's `local-completions` model as stage 06's vLLM server needs it, registered as
`cgd-local-completions` (eval.general.model: vllm_server).

vLLM 0.32's server refuses a request with more than 4 stop strings (400; vllm/envs.py
VLLM_MAX_STOP_STRINGS), and lm-eval sends a task's whole `until` list plus the EOS text: HumanEval's
five stops and EOS would fail every request. Here a request carries the first
`vllm_client.SERVER_STOP_STRINGS` and the rest are cut from the text on return, as cgd.generation's
own client does: stop strings only end generation, so the text is the one vLLM would return.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalCompletionsAPI
from lm_eval.models.utils import handle_stop_sequences

from cgd.generation.base import cut_at_stop
from cgd.generation.vllm_client import SERVER_STOP_STRINGS

NAME = "cgd-local-completions"


@register_model(NAME)
class ServerCompletions(LocalCompletionsAPI):
    def _create_payload(self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None, **kwargs) -> dict:
        payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, eos=eos,
                                          **kwargs)
        if generate and payload.get("stop"):
            payload["stop"] = list(payload["stop"])[:SERVER_STOP_STRINGS]
        return payload

    def _stops(self, gen_kwargs: dict | None) -> tuple[str, ...]:
        until = (gen_kwargs or {}).get("until")
        return tuple(handle_stop_sequences(list(until) if isinstance(until, list) else until, self.eos_string))

    def model_call(self, messages, *, generate=True, gen_kwargs=None, **kwargs):
        out = super().model_call(messages, generate=generate, gen_kwargs=gen_kwargs, **kwargs)
        if generate and isinstance(out, dict):
            stops = self._stops(gen_kwargs)
            for choice in out.get("choices", []):
                if isinstance(choice.get("text"), str):
                    choice["text"] = cut_at_stop(choice["text"], stops)[0]
        return out

    async def amodel_call(self, session, sem, messages, *, generate=True, cache_keys=None, ctxlens=None,
                          gen_kwargs=None, **kwargs):
        answers = await super().amodel_call(session, sem, messages, generate=generate, cache_keys=cache_keys,
                                            ctxlens=ctxlens, gen_kwargs=gen_kwargs, **kwargs)
        if not generate or answers is None:
            return answers
        stops = self._stops(gen_kwargs)
        return [cut_at_stop(a, stops)[0] if isinstance(a, str) else a for a in answers]
