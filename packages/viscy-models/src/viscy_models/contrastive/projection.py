"""Projection head shared by the contrastive encoders."""

from __future__ import annotations

from torch import nn


def projection_mlp(in_dims: int, hidden_dims: int, out_dims: int) -> nn.Sequential:
    """Two-layer MLP with batch norm (SimCLR-style projection head).

    Parameters
    ----------
    in_dims : int
        Width of the embedding.
    hidden_dims : int
        Hidden width.
    out_dims : int
        Width of the projection.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d`` (state_dict keys ``0``, ``1``, ``3``, ``4``).
    """
    return nn.Sequential(
        nn.Linear(in_dims, hidden_dims),
        nn.BatchNorm1d(hidden_dims),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dims, out_dims),
        nn.BatchNorm1d(out_dims),
    )
