"""Data loaders shared by the DataModules of this package and of applications.

:func:`thread_worker_loader` builds the MONAI ``ThreadDataLoader`` that the patch DataModules
(``TripletDataModule``, ``BatchedConcatDataModule``, ``dynaclr``'s ``MultiExperimentDataModule``) use:
worker *threads* share the process's open arrays (:mod:`viscy_data.patch_reader`) and leave the torch
thread count alone. Unlike MONAI's ``ThreadBuffer``, its read-ahead never ends an epoch silently: an
exception raised while reading a batch is raised by the loader's iterator, and SIGTERM keeps reaching
the process's Python handler (a scheduler's stop is never an exit with status 0).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from queue import Empty, Full, Queue
from typing import Any

import torch
from monai.data import ThreadDataLoader

__all__ = ["ThreadWorkerLoader", "thread_worker_loader"]


class _ThreadWorkerInit:
    """``worker_init_fn`` of thread workers: undoes the worker loop's process-wide settings.

    - ``torch.set_num_threads(1)`` (meant for worker processes) is set back to the caller's count;
    - each worker reports that it has started, so that the loader can then take back SIGTERM (see
      :meth:`ThreadWorkerLoader.__iter__`).
    """

    def __init__(self, num_threads: int) -> None:
        self.num_threads = num_threads
        self.started = threading.Semaphore(0)

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(self.num_threads)
        self.started.release()


#: what the prefetch thread puts in the queue after the last batch (with the exception that ended it, if any)
_END = object()


def _prefetch(source: Iterator[Any], buffer_size: int, repeats: int) -> Iterator[Any]:
    """Yield the items of ``source``, read ahead by a background thread; re-raise its errors here.

    MONAI's ``ThreadBuffer`` lets an exception end its thread silently: the consumer sees a short (or
    empty) epoch and the run goes on. Here the exception that ended ``source`` travels through the
    queue and is raised in the consuming thread with its original traceback.
    """
    buffer: Queue = Queue(maxsize=max(1, buffer_size))
    stop = threading.Event()

    def put(item: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        error = None
        try:
            for value in source:
                if not put((value, None)):
                    return
        except BaseException as err:  # noqa: BLE001 - every error must reach the consumer
            error = err
        put((_END, error))

    thread = threading.Thread(target=produce, name="viscy-loader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                value, error = buffer.get(timeout=1.0)
            except Empty:
                if not thread.is_alive() and buffer.empty():
                    raise RuntimeError("the loader's prefetch thread ended without a result") from None
                continue
            if value is _END:
                if error is not None:
                    raise error
                return
            for _ in range(repeats):
                yield value
    finally:
        stop.set()
        thread.join()


#: how long the loader waits for its worker threads to start before taking back SIGTERM anyway
_WORKER_START_TIMEOUT_S = 60.0


class ThreadWorkerLoader(ThreadDataLoader):
    """``ThreadDataLoader`` whose read-ahead thread passes loader errors on to the training loop.

    Built by :func:`thread_worker_loader`; see there.
    """

    def __iter__(self) -> Iterator[Any]:
        init = self.worker_init_fn if isinstance(self.worker_init_fn, _ThreadWorkerInit) else None
        if init is not None:
            init.started = threading.Semaphore(0)
        source = super(ThreadDataLoader, self).__iter__()
        if init is not None and self.num_workers > 0:
            _reclaim_sigterm(init.started, self.num_workers)
        return _prefetch(source, self.buffer_size, self.repeats)


def _reclaim_sigterm(started: threading.Semaphore, num_workers: int) -> None:
    """Reinstall the process's Python SIGTERM handler once the worker threads have started.

    torch's worker loop installs C signal handlers meant for worker *processes*; from a worker thread
    they replace the whole process's: a SIGTERM from the parent process (a scheduler's step daemon,
    a shell) then ends the process at once with status 0, and Lightning never sees it. Re-setting the
    Python-level handler (from the main thread) restores it; the window in between is a few
    milliseconds per epoch.
    """
    deadline = time.monotonic() + _WORKER_START_TIMEOUT_S
    for _ in range(num_workers):
        if not started.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def thread_worker_loader(dataset: Any, **kwargs: Any) -> ThreadWorkerLoader:
    """Build a MONAI ``ThreadDataLoader`` with thread workers that keeps the torch thread count.

    torch's worker loop calls ``torch.set_num_threads(1)``, which is meant for worker processes; in a
    worker *thread* it sets the count for the whole process, so the transforms that then run on the
    batches in the main thread (``on_after_batch_transfer``) lose their intra-op parallelism. The
    worker init function sets the count back to what it was when the loader was built. The worker loop
    also installs worker-process signal handlers process-wide (a SIGTERM from the parent would end
    the process with status 0); the loader reinstalls the Python SIGTERM handler once the workers run.

    An exception raised while reading a batch (in a worker thread or in the read-ahead thread) is
    raised by the loader's iterator in the consuming thread, with its original traceback: a failed
    read stops the run instead of ending the epoch early.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    **kwargs
        Passed to ``monai.data.ThreadDataLoader`` (``worker_init_fn`` is not accepted).

    Returns
    -------
    ThreadWorkerLoader
        A ``monai.data.ThreadDataLoader``.
    """
    return ThreadWorkerLoader(
        dataset, use_thread_workers=True, worker_init_fn=_ThreadWorkerInit(torch.get_num_threads()), **kwargs
    )
