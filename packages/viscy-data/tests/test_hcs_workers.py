"""HCSDataModule with real worker processes (forked): no hang, same batches as in-process loading.

Regression: with iohub's default zarrs codec pipeline, forked workers waited forever on the first read
(see ``viscy_data._io.LazyPositions``); the timeout turns such a hang into a failure.
"""

import pytest
import torch

from viscy_data.hcs import HCSDataModule


def _batches(plate, num_workers, stage):
    dm = HCSDataModule(
        plate.store_path,
        source_channel="Phase3D",
        target_channel="GFP",
        z_window_size=2,
        batch_size=4,
        num_workers=num_workers,
        yx_patch_size=(64, 64),
        seed=0,
    )
    dm.setup(stage)
    if stage == "fit":
        # a fixed permutation so both runs visit the windows in the same order
        torch.manual_seed(0)
        loader = dm.train_dataloader()
    else:
        loader = dm.predict_dataloader()
    return [(b["source"], b.get("target"), b["index"]) for b in loader]


@pytest.mark.timeout(240)
def test_two_workers_match_in_process_batches(synthetic_plate):
    # one full epoch of train batches through forked workers equals the num_workers=0 epoch
    expected = _batches(synthetic_plate, 0, "fit")
    got = _batches(synthetic_plate, 2, "fit")
    assert len(got) == len(expected) > 0
    for (src, tgt, idx), (src0, tgt0, idx0) in zip(got, expected):
        assert src.shape == (4, 1, 2, 64, 64)
        torch.testing.assert_close(src, src0, rtol=0, atol=0)
        torch.testing.assert_close(tgt, tgt0, rtol=0, atol=0)
        assert idx[0] == idx0[0]
        torch.testing.assert_close(idx[1], idx0[1])


@pytest.mark.timeout(240)
def test_two_workers_predict(synthetic_plate):
    expected = _batches(synthetic_plate, 0, "predict")
    got = _batches(synthetic_plate, 2, "predict")
    assert sum(len(s) for s, _, _ in got) == sum(len(s) for s, _, _ in expected)
    torch.testing.assert_close(torch.cat([s for s, _, _ in got]), torch.cat([s for s, _, _ in expected]))
