"""Assemble a batch from transformed selected samples and untouched others, with as few copies as possible."""

from __future__ import annotations

import torch

__all__ = ["merge_selected"]


def merge_selected(img: torch.Tensor, selected: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Return a new batch holding ``values`` at rows ``selected`` and ``img``'s samples everywhere else.

    When most samples are selected, copies only the unselected samples of ``img`` instead of cloning all of
    them and overwriting most: on CPU these batch-sized copies cost as much as the transforms' maths.

    Parameters
    ----------
    img : torch.Tensor
        The untransformed batch ``(B, ...)``; never modified.
    selected : torch.Tensor
        Sorted, unique row indices ``(S,)`` of the transformed samples.
    values : torch.Tensor
        The transformed samples ``(S, ...)``, in the order of ``selected``; their dtype is the output's.

    Returns
    -------
    torch.Tensor
        ``values`` itself when every row is selected, else a new ``(B, ...)`` tensor.
    """
    n = img.shape[0]
    if selected.numel() == n:
        return values
    if 2 * selected.numel() <= n:  # most rows untouched: one full copy, then overwrite the few selected
        return img.to(values.dtype, copy=True).index_copy_(0, selected, values)
    # most rows selected: copy just the unselected samples in (twice: gather, then scatter)
    keep = torch.ones(n, dtype=torch.bool, device=img.device)
    keep[selected] = False
    unselected = keep.nonzero().squeeze(1)
    out = torch.empty((n, *values.shape[1:]), dtype=values.dtype, device=values.device)
    # index_copy_ (not index_put_ / index_add_): deterministic on CUDA under torch.use_deterministic_algorithms
    out.index_copy_(0, unselected, img.index_select(0, unselected).to(values.dtype))
    return out.index_copy_(0, selected, values)
