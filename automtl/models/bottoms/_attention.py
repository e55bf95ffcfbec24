"""Multi-head scaled dot-product attention with key-padding masks (shared by DTRN and APEM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multihead_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, key_valid: Tensor | None = None
) -> Tensor:
    """softmax(Q K^T / sqrt(d_h)) V per head, heads concatenated.

    q: [..., Lq, d]; k, v: [..., Lk, d]; key_valid: bool [..., Lk] (False = padding).
    Padded keys get zero weight; a row whose keys are all padding returns zeros (not NaN).
    """
    *lead, lq, d = q.shape
    lk = k.shape[-2]
    if d % heads:
        raise ValueError(f"attention dim {d} is not divisible by {heads} heads")
    dh = d // heads

    def split(x: Tensor, length: int) -> Tensor:
        return x.reshape(-1, length, heads, dh).transpose(1, 2)  # [N, h, L, dh]

    mask = None
    has_any = None
    if key_valid is not None:
        kv = key_valid.reshape(-1, lk)
        has_any = kv.any(dim=-1)
        # An all-padding row would softmax over nothing (NaN); let it attend everywhere and
        # zero its output below, so padding content still cannot leak into the result.
        mask = (kv | ~has_any[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(split(q, lq), split(k, lk), split(v, lk), attn_mask=mask)
    out = out.transpose(1, 2).reshape(*lead, lq, d)
    if has_any is not None:
        out = out * has_any.reshape(*lead, 1, 1).to(out.dtype)
    return out
