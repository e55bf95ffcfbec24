"""PWiseR pairwise ranking loss (Durmus et al., "Pairwise Ranking Loss for Multi-Task Learning
in Recommender Systems", arXiv 2024), eq. (1)-(2).

Loss = BCE + lambda * PWiseR, with, inside one batch and on one task's scores s (probabilities):

    PWiseR = 1/|P1| sum_{(i, j) in P1} [s_i - s_j + m1]_+^2  +  1/|P2| sum_{(k, j) in P2} [s_k - s_j + m2]_+^2

where j runs over conversion samples (last cascade task = 1), i over click-only samples (cascade
root = 1, last task = 0), k over no-click samples (root = 0); P1, P2 are all such pairs. A pair
costs only when the conversion does not outscore the other sample by its margin ("violated").

Reading of the paper (its N/K/M definitions are swapped against its sums, and its indicator
delta(s_j < s_i - m) contradicts its cost (s_i - s_j + m)^2): we implement the stated intent —
squared hinge on violated margins — and normalise each sum by its number of pairs (zero when a
batch has no such pair). The loss is zero when every margin holds.

Computed in O(B log B) without materialising the B x B pair matrix: for a positive with threshold
a = s_j - m, sum_{negatives v > a} (v - a)^2 = S2 - 2 a S1 + a^2 n over the negatives above a, read
from suffix sums of the sorted negative scores; no data-dependent shapes, so no host sync on GPU.
"""

from __future__ import annotations

import torch


def margin_pair_loss(
    scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean over (pos j, neg i) pairs of max(s_i - s_j + margin, 0)^2; 0 without pairs.

    `scores` [B] (float), `pos`/`neg` [B] boolean masks.
    """
    s = scores.float()
    n = s.shape[0]
    # Non-negatives sit far below any threshold a = s_j - margin >= -margin, so they never count.
    low = -(abs(float(margin)) + 1e4)
    v, _ = torch.sort(torch.where(neg, s, torch.full_like(s, low)))
    # suffix sums of the k largest values (index k = 0..n), summed from the top: exact for
    # the real scores, never touched by the placeholders below the threshold.
    top = torch.flip(v, dims=(0,))
    zero = s.new_zeros(1)
    s1 = torch.cat([zero, torch.cumsum(top, 0)])
    s2 = torch.cat([zero, torch.cumsum(top * top, 0)])
    a = s - margin
    k = n - torch.searchsorted(v.detach().contiguous(), a.detach().contiguous(), right=True)
    per_pos = s2[k] - 2.0 * a * s1[k] + a * a * k.to(s.dtype)
    per_pos = torch.clamp_min(per_pos, 0.0)  # rounding guard: a sum of squares is >= 0
    posf = pos.to(s.dtype)
    pairs = posf.sum() * neg.to(s.dtype).sum()
    return (per_pos * posf).sum() / torch.clamp_min(pairs, 1.0)


def pwiser_loss(
    scores: torch.Tensor,
    root_labels: torch.Tensor,
    last_labels: torch.Tensor,
    m1: float,
    m2: float,
) -> torch.Tensor:
    """PWiseR of eq. (2) on `scores` [B] (probabilities) with the cascade's first (click) and
    last (conversion) labels [B]: conversion vs click-only by m1 plus conversion vs no-click by m2.
    """
    conv = last_labels > 0.5
    clicked = root_labels > 0.5
    click_only = clicked & ~conv
    no_click = ~clicked
    return margin_pair_loss(scores, conv, click_only, m1) + margin_pair_loss(
        scores, conv, no_click, m2
    )
