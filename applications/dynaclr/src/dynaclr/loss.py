"""NT-Xent with hard-negative concentration (HCL) for contrastive training."""

from __future__ import annotations

import torch
from pytorch_metric_learning.losses import NTXentLoss
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

__all__ = ["NTXentHCL"]


class NTXentHCL(NTXentLoss):
    """NT-Xent loss whose negatives are re-weighted towards the hardest ones.

    For each ordered positive pair ``(i, p)`` with negatives ``N(i)`` and similarities ``s``::

        w_ik = |N(i)| * softmax_k(beta * s_ik)          (weights sum to |N(i)|)
        l_i  = -log(exp(s_ip / T) / (exp(s_ip / T) + sum_k w_ik * exp(s_ik / T)) + tiny)

    and the loss is the mean over positive pairs. ``beta = 0`` is exactly
    :class:`pytorch_metric_learning.losses.NTXentLoss`. Unlike the parent class, no
    (positive pairs x negative pairs) mask is built: the work is done on the (N, N) similarity
    matrix, so 256 pairs cost a few MB instead of gigabytes.

    Parameters
    ----------
    temperature : float
        Softmax temperature ``T``.
    beta : float
        Hard-negative concentration; 0 disables re-weighting.
    **kwargs
        Forwarded to :class:`NTXentLoss` (``distance``, ``reducer``, ``embedding_regularizer``, ...).
    """

    def __init__(self, temperature: float = 0.07, beta: float = 0.5, **kwargs) -> None:
        super().__init__(temperature=temperature, **kwargs)
        self.beta = beta
        self.add_to_recordable_attributes(list_of_names=["beta"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """Compute per-positive-pair losses (see the class docstring)."""
        if labels is None and indices_tuple is None:
            raise ValueError("NTXentHCL needs labels or an indices_tuple")
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        if len(a1) == 0 or len(a2) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)
        if not self.distance.is_inverted:
            mat = -mat
        neg_mask = torch.zeros(mat.shape, dtype=torch.bool, device=mat.device)
        neg_mask[a2, n] = True
        dtype = mat.dtype
        neg_inf = torch.finfo(dtype).min
        logits = mat / self.temperature
        if self.beta != 0:
            # log w_ik = log|N(i)| + log softmax_k(beta * s_ik), per anchor row
            hard = torch.where(neg_mask, self.beta * mat, torch.full_like(mat, neg_inf))
            n_neg = neg_mask.sum(dim=1, keepdim=True).clamp_min(1).to(dtype)
            logits = logits + torch.log(n_neg) + torch.log_softmax(hard, dim=1)
        # rows only for anchors that own a positive pair: (P, N), never (P, P x N)
        neg_logits = torch.where(neg_mask, logits, torch.full_like(logits, neg_inf))[a1]
        has_neg = neg_mask[a1]
        pos_logits = (mat[a1, p] / self.temperature).unsqueeze(1)
        max_val = torch.max(pos_logits, neg_logits.max(dim=1, keepdim=True).values).detach()
        numerator = torch.exp(pos_logits - max_val).squeeze(1)
        neg_terms = torch.where(has_neg, torch.exp(neg_logits - max_val), torch.zeros_like(neg_logits))
        denominator = neg_terms.sum(dim=1) + numerator
        log_exp = torch.log(numerator / denominator + torch.finfo(dtype).tiny)
        return {"loss": {"losses": -log_exp, "indices": (a1, p), "reduction_type": "pos_pair"}}
