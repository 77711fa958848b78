import textwrap

import pytest
import torch
import torch.multiprocessing as mp

from viscy_data.distributed import ShardedDistributedSampler

WORKER = textwrap.dedent(
    """
    import os

    import torch
    import torch.distributed as dist

    from viscy_data.distributed import ShardedDistributedSampler


    def run(rank, world_size, port, out_dir, n_items):
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            sampler = ShardedDistributedSampler(list(range(n_items)), seed=5)  # rank/world from the group
            orders = []
            for epoch in (0, 1, 0):
                sampler.set_epoch(epoch)
                orders.append(list(sampler))
            gathered = [None] * world_size
            dist.all_gather_object(gathered, orders)
            if rank == 0:
                torch.save(gathered, os.path.join(out_dir, "orders.pt"))
        finally:
            dist.destroy_process_group()
    """
)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_shards(tmp_path, monkeypatch):
    (tmp_path / "viscy_data_dist_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import viscy_data_dist_worker

    n_items = 20
    mp.spawn(viscy_data_dist_worker.run, args=(2, _free_port(), str(tmp_path), n_items), nprocs=2, join=True)
    gathered = torch.load(tmp_path / "orders.pt")
    (r0_e0, r0_e1, r0_e0b), (r1_e0, r1_e1, r1_e0b) = gathered
    assert len(r0_e0) == len(r1_e0) == 10
    assert set(r0_e0).isdisjoint(r1_e0)
    assert set(r0_e0) | set(r1_e0) == set(range(n_items))
    # contiguous blocks, reshuffled per epoch, deterministic for a given epoch
    assert set(r0_e0) == set(range(10)) and set(r1_e0) == set(range(10, 20))
    assert r0_e0 != r0_e1 and set(r0_e0) == set(r0_e1)
    assert r0_e0 == r0_e0b and r1_e0 == r1_e0b


def test_last_block_shifts_left():
    data = list(range(10))
    blocks = [set(ShardedDistributedSampler(data, num_replicas=3, rank=r, seed=0)) for r in range(3)]
    assert blocks == [set(range(4)), set(range(4, 8)), set(range(6, 10))]
    assert all(len(ShardedDistributedSampler(data, num_replicas=3, rank=r)) == 4 for r in range(3))


def test_drop_last_floors_blocks():
    data = list(range(10))
    blocks = [list(ShardedDistributedSampler(data, num_replicas=3, rank=r, drop_last=True)) for r in range(3)]
    assert [len(b) for b in blocks] == [3, 3, 3]
    assert set().union(*map(set, blocks)) == set(range(9))


def test_no_shuffle_is_strided():
    data = list(range(7))
    orders = [list(ShardedDistributedSampler(data, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert orders == [[0, 2, 4, 6], [1, 3, 5, 0]]


@pytest.mark.parametrize("seed", range(10))
def test_shuffle_is_a_permutation_and_seeded(seed):
    data = list(range(50))
    a = ShardedDistributedSampler(data, num_replicas=4, rank=2, seed=seed)
    b = ShardedDistributedSampler(data, num_replicas=4, rank=2, seed=seed)
    assert list(a) == list(b)
    assert sorted(a) == list(range(26, 39))
    b.set_epoch(1)
    assert list(a) != list(b)


def test_fewer_items_than_ranks():
    data = [0, 1]
    for r in range(3):
        assert set(ShardedDistributedSampler(data, num_replicas=3, rank=r)) <= {0, 1}
