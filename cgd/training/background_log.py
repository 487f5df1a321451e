"""Logging callbacks run off the training loop, so a logged step does not hold the device idle.

At a logged step the Trainer has already synced the device for the loss; what follows on the main
thread (DVCLive's metric files and summary, and a Studio POST where DVC_STUDIO_TOKEN is set) runs
before the next step's kernels are queued, so the GPU waits for it. `Background` hands each log to
one worker thread and returns; the worker keeps the order, so the curves are written exactly as
before. Every other event (train end, save) first waits for the logs queued ahead of it, so a
checkpoint or the final summary never misses a point. An error in the worker stops the run at the
next event.
"""

from __future__ import annotations

import copy
import queue
import threading

from transformers import TrainerCallback


class Background(TrainerCallback):
    """Runs `inner.on_log` on a worker thread; forwards the other events after draining it."""

    def __init__(self, inner: TrainerCallback):
        self.inner = inner
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.worker = threading.Thread(target=self._work, name="cgd-log-writer", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is not None and self.error is None:
                    args, state, control, logs, kwargs = item
                    self.inner.on_log(args, state, control, logs=logs, **kwargs)
            except BaseException as exc:  # raised again on the main thread at the next event
                self.error = exc
            finally:
                self.queue.task_done()
            if item is None:
                return

    def drain(self) -> None:
        self.queue.join()
        if self.error is not None:
            raise RuntimeError("the background log writer failed") from self.error

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.error is not None:
            self.drain()
        # The Trainer keeps mutating its state; the worker gets this step's copy. The model and the
        # optimizer are left out: DVCLive's on_log reads neither, and they must not cross threads.
        kwargs = {k: v for k, v in kwargs.items() if k not in ("model", "optimizer", "lr_scheduler",
                                                              "train_dataloader", "eval_dataloader",
                                                              "processing_class")}
        self.queue.put((args, copy.copy(state), control, dict(logs or {}), kwargs))

    def close(self) -> None:
        """Writes what is queued and stops the worker (idempotent)."""
        if self.worker.is_alive():
            self.queue.put(None)
            self.worker.join()
        if self.error is not None:
            raise RuntimeError("the background log writer failed") from self.error


def _forward(event: str):
    def method(self, args, state, control, **kwargs):
        self.drain()
        return getattr(self.inner, event)(args, state, control, **kwargs)

    method.__name__ = event
    return method


for _event in ("on_init_end", "on_train_begin", "on_save", "on_evaluate", "on_epoch_end"):
    setattr(Background, _event, _forward(_event))


def _on_train_end(self, args, state, control, **kwargs):
    self.close()
    return self.inner.on_train_end(args, state, control, **kwargs)


Background.on_train_end = _on_train_end
