import torch

from viscy_data._utils import thread_worker_loader


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
