"""What of vLLM's engine logging a reader sees: its warnings, without its INFO lines and without the
warnings this pipeline causes on purpose.

An in-process engine logs ~35 lines when it starts on the CPU (its whole config, thread binding,
KV-cache sizing) and repeats some on every call; in a notebook cell they bury the progress bars and
results. While an engine is open, `Quiet` hands vLLM a logging configuration of ours through its own
setting for one (`VLLM_LOGGING_CONFIG_PATH`, which the engine applies when it starts): vLLM's logger
at WARNING, minus the warnings listed below, each the consequence of a setting chosen here (see the
comment beside it). Any other warning still shows. `CGD_VLLM_VERBOSE=1` shows everything, as vLLM
logs it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings

EXPECTED = (
    "The global random seed is set to",  # the engine runs in this process (uni executor) with the stage's seed
    "does not officially support disabling chunked prefill",  # off on CPU: per-request seeds need it
    "Enforce eager set",  # <role>.enforce_eager (the CPU demo)
    "Inductor compilation was disabled",  # follows from enforce_eager
    "Triton is not installed",  # the CPU build ships without triton-cpu
    "Model Runner V2 requires Triton",  # ditto: V1 runner
    "Reset SSM cache type",  # no Mamba layers in the models here
    "is not found in LD_PRELOAD",  # tcmalloc / iomp: optional speed-ups, not installed by pip
    "doesn't allow to use `torch.set_num_threads`",  # its CPU worker binds threads itself; ours are set before
)
ENV = "VLLM_LOGGING_CONFIG_PATH"
# torch's own notice when vLLM imports its kernels on a machine without Triton (the CPU build)
QUIET_LOGGERS = ("torch._library.triton",)


class Expected(logging.Filter):
    """Drops the records listed in EXPECTED (referenced by name from the logging configuration)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in EXPECTED)


def logging_config() -> dict:
    """A `logging.config.dictConfig` for the "vllm" logger: WARNING and above, EXPECTED left out."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"expected": {"()": f"{__name__}.Expected"}},
        "formatters": {"plain": {"format": "vLLM %(levelname)s [%(filename)s:%(lineno)d] %(message)s"}},
        "handlers": {"cgd_vllm": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                  "formatter": "plain", "filters": ["expected"], "level": "WARNING"}},
        "loggers": {"vllm": {"handlers": ["cgd_vllm"], "level": "WARNING", "propagate": False}},
    }


class Quiet:
    """Install for an engine's life (`install()` before it starts, `remove()` after it closes), or
    `with Quiet():` around a call that starts and stops one."""

    def __init__(self):
        self._saved = None

    def install(self) -> None:
        if os.environ.get("CGD_VLLM_VERBOSE") or self._saved is not None:
            return
        fd, path = tempfile.mkstemp(prefix="cgd-vllm-logging-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(logging_config(), fh)
        self._saved = (os.environ.get(ENV), path, list(warnings.filters),
                       {name: logging.getLogger(name).level for name in QUIET_LOGGERS})
        os.environ[ENV] = path
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        # vLLM's triton dispatcher touches a deprecated torch alias while importing its kernels
        warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op.* is deprecated",
                                category=FutureWarning)

    def remove(self) -> None:
        if self._saved is None:
            return
        old, path, filters, levels = self._saved
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        os.unlink(path)
        warnings.filters[:] = filters
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved = None

    def __enter__(self) -> "Quiet":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
