import threading

import pytest
import torch

from viscy_data.loading import thread_worker_loader


def test_thread_workers_keep_the_process_thread_count():
    """torch's worker loop sets one thread process-wide; the loader must restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = thread_worker_loader(list(range(8)), batch_size=2, num_workers=2)
        batches = [b.tolist() for b in loader]
        assert sorted(sum(batches, [])) == list(range(8))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _FailingDataset(torch.utils.data.Dataset):
    """Items 0..n-1; reading item ``bad`` raises like a truncated chunk would."""

    def __init__(self, n: int = 12, bad: int = 7):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index == self.bad:
            raise OSError(f"Invalid blosc-compressed data in chunk of item {index}")
        return index


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_failed_read_reaches_the_consumer_with_its_message(num_workers):
    # MONAI's ThreadBuffer ended the epoch early and silently: the consumer saw 3 batches and went on
    loader = thread_worker_loader(_FailingDataset(), batch_size=2, num_workers=num_workers)
    seen = []
    with pytest.raises(OSError, match="Invalid blosc-compressed data in chunk of item 7"):
        for batch in loader:
            seen.append(batch.tolist())
    assert seen == [[0, 1], [2, 3], [4, 5]]  # the batches before the failure, in order
    assert not [t for t in threading.enumerate() if t.name == "viscy-loader-prefetch"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_epoch_raises_not_only_the_first(num_workers):
    loader = thread_worker_loader(_FailingDataset(n=4, bad=0), batch_size=2, num_workers=num_workers)
    for _ in range(3):
        with pytest.raises(OSError, match="item 0"):
            list(loader)


def test_a_consumer_that_stops_early_leaves_no_thread_behind():
    loader = thread_worker_loader(list(range(64)), batch_size=2, num_workers=2, buffer_size=2)
    for i, batch in enumerate(loader):
        if i == 2:
            break
    assert batch.tolist() == [4, 5]
    assert not [t for t in threading.enumerate() if t.name == "viscy-loader-prefetch"]
    assert [b.tolist() for b in loader][:2] == [[0, 1], [2, 3]]  # and the loader starts over cleanly


_SIGTERM_CHILD = """
import signal, sys, time
from viscy_data.loading import thread_worker_loader

def handler(signum, frame):
    print("handled", flush=True)
    sys.exit(7)

signal.signal(signal.SIGTERM, handler)
assert [b.tolist() for b in thread_worker_loader(list(range(4)), batch_size=2, num_workers=2)] == [[0, 1], [2, 3]]
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(300)
def test_thread_workers_leave_the_process_sigterm_handler_in_place():
    # torch's worker loop installs a worker-process SIGTERM handler; from a thread it is process-wide and
    # a SIGTERM from the parent (a scheduler) ended the process with status 0, unseen by Lightning
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=60)
    assert (child.returncode, out.strip()) == (7, "handled")
