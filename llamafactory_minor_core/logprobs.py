"""Lean per-sequence log-probabilities of the labels under the logits.

Same semantics as LLaMA-Factory 0.9.5's ``llamafactory.train.trainer_utils.get_batch_logps``
(without its ``ld_alpha`` option)::

    labels = labels[:, 1:];  logits = logits[:, :-1]          # token t predicts label t+1
    mask   = labels != ignore_index
    logps  = sum_t mask * log_softmax(logits)[..., labels]     # -> [B]
    length = mask.sum(-1)                                      # -> [B]

but without LF's memory cost. LF's DPO trainer upcasts all logits to float32 (``.to(torch.float32)``)
and calls ``log_softmax`` on the whole ``[B, T, V]`` tensor, so forward and backward hold several
float32 ``[B, T, V]`` buffers (the upcast copy, the log-softmax output saved for backward, the gradient
of the log-softmax output, the gradient of the upcast copy). Here the per-token log-probability is::

    log p(y_t) = z_t[y_t] - logsumexp(z_t)

computed by a custom :class:`torch.autograd.Function` over *chunks of rows* (one row = one position
whose label is not ignored): only one chunk is upcast to float32 at a time, and the backward pass
recomputes the chunk's softmax from the saved row ``logsumexp`` and writes::

    d log p(y_t) / d z_t = onehot(y_t) - softmax(z_t)

times the incoming gradient, chunk by chunk, straight into a gradient buffer in the logits' own dtype.
Positions whose label is ``ignore_index`` (prompt, padding) are never touched: they cost nothing and
receive an exact zero gradient, as in LF (where the mask multiplies them by zero).

Extra memory beyond the (unavoidable) gradient of the logits: one float32 work buffer of
``rows x V``, reused by every chunk, plus small per-row vectors. ``rows = min(chunk_size, 2**26 // V)``:
``chunk_size`` is the maximum number of rows per chunk, and the buffer is also capped at 2**26 floats
(256 MB), which only bites for large vocabularies (441 rows at V = 152,064; 1024 rows fit for
V <= 65,536). Accepts bf16 / fp16 / fp32 / fp64 logits and arbitrary strides (rows are gathered with
advanced indexing, never by flattening the whole tensor). Float64 logits are computed
in float64 (so ``torch.autograd.gradcheck`` works); all other dtypes are computed and returned in
float32.
"""

from __future__ import annotations

import torch

__all__ = ["sequence_log_probs", "token_log_probs"]

# Rows moved between the logits' dtype and the float32 work buffer per copy; keeps the temporary
# copy in the logits' own dtype small (16 rows x 152k vocab x 2 bytes = 4.9 MB).
_COPY_ROWS = 16
# Upper bound on the elements of the float32 work buffer (2**26 floats = 256 MB): with a 152k vocabulary
# a chunk holds at most 441 rows whatever ``chunk_size`` says; with a 32k vocabulary ``chunk_size``=1024
# rows (128 MB) is used as given.
_MAX_CHUNK_ELEMENTS = 1 << 26


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk_rows(chunk_size: int, vocab: int) -> int:
    """Rows per chunk: ``chunk_size``, capped so that one float32 chunk stays <= ``_MAX_CHUNK_ELEMENTS``."""
    return max(1, min(chunk_size, _MAX_CHUNK_ELEMENTS // max(vocab, 1)))


def _load_rows(logits: torch.Tensor, bi: torch.Tensor, ti: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (``[n, V]``, compute dtype) with ``logits[bi, ti]``, upcast in small pieces; return it."""
    n = bi.numel()
    for s in range(0, n, _COPY_ROWS):
        e = min(s + _COPY_ROWS, n)
        out[s:e].copy_(logits[bi[s:e], ti[s:e]])
    return out


class _TokenLogProbs(torch.autograd.Function):
    """Per-token label log-probs of the valid positions; see the module docstring."""

    @staticmethod
    def forward(ctx, logits, safe_labels, bi, ti, chunk_size):
        # logits: [B, T, V] (any dtype/strides); safe_labels: [B, T-1] (ignored positions set to 0)
        # bi, ti: indices of the valid positions in [B, T-1] (and thus of their rows in logits).
        cdtype = _compute_dtype(logits.dtype)
        n = bi.numel()
        labels_valid = safe_labels[bi, ti]
        logp = torch.empty(n, dtype=cdtype, device=logits.device)
        lse = torch.empty(n, dtype=cdtype, device=logits.device)
        rows = _chunk_rows(chunk_size, logits.size(-1))
        buf = torch.empty((min(rows, n), logits.size(-1)), dtype=cdtype, device=logits.device)  # reused
        for s in range(0, n, rows):
            e = min(s + rows, n)
            x = _load_rows(logits, bi[s:e], ti[s:e], buf[: e - s])  # private float buffer: in-place is safe
            target = x.gather(1, labels_valid[s:e, None]).squeeze(1)
            row_max = x.amax(dim=1)
            x.sub_(row_max[:, None]).exp_()
            log_sum = x.sum(dim=1).log_()
            # Same association as log_softmax: (z_y - max) - log(sum(exp(z - max)))
            logp[s:e] = (target - row_max) - log_sum
            lse[s:e] = row_max + log_sum
        del buf
        ctx.save_for_backward(logits, labels_valid, bi, ti, lse)
        ctx.chunk_size = chunk_size
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        logits, labels_valid, bi, ti, lse = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        cdtype = lse.dtype
        grad_logits = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.zeros(logits.shape, dtype=logits.dtype, device=logits.device)
            grad_logp = grad_logp.to(cdtype)
            n = bi.numel()
            rows = _chunk_rows(chunk_size, logits.size(-1))
            buf = torch.empty((min(rows, n), logits.size(-1)), dtype=cdtype, device=logits.device)
            for s in range(0, n, rows):
                e = min(s + rows, n)
                g = grad_logp[s:e]
                x = _load_rows(logits, bi[s:e], ti[s:e], buf[: e - s])
                x.sub_(lse[s:e, None]).exp_()  # softmax of the chunk
                x.mul_(g.neg()[:, None])  # -softmax * g
                x.scatter_add_(1, labels_valid[s:e, None], g[:, None])  # + onehot * g
                for s2 in range(0, e - s, _COPY_ROWS):
                    e2 = min(s2 + _COPY_ROWS, e - s)
                    grad_logits[bi[s + s2 : s + e2], ti[s + s2 : s + e2]] = x[s2:e2].to(logits.dtype)
            del buf
        return grad_logits, None, None, None, None


def token_log_probs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token label log-probabilities with LF's shift, computed chunk-wise.

    Args:
        logits: ``[B, T, V]`` float tensor (bf16, fp16, fp32 or fp64; any strides).
        labels: ``[B, T]`` integer tensor; ``ignore_index`` marks positions without a target.
        ignore_index: label value that is masked out (LF's ``IGNORE_INDEX`` is -100).
        chunk_size: maximum number of valid positions (rows of ``V`` logits) upcast to float32 at a
            time (further capped at 2**26 float32 elements per chunk, see the module docstring).

    Returns:
        ``(per_token_logps, mask)``: ``per_token_logps`` is ``[B, T-1]`` float32 (float64 for float64
        logits), the log-probability of ``labels[:, 1:]`` under ``logits[:, :-1]``, exactly 0 where the
        label is ignored; ``mask`` is the ``[B, T-1]`` bool tensor ``labels[:, 1:] != ignore_index``.
        Differentiable w.r.t. ``logits``.
    """
    if logits.dim() != 3 or labels.dim() != 2:
        raise ValueError(
            f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if logits.shape[:-1] != labels.shape:
        raise ValueError("Logits (batchsize x seqlen) and labels must have the same shape.")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    cdtype = _compute_dtype(logits.dtype)
    shifted = labels[:, 1:].to(device=logits.device)
    mask = shifted != ignore_index
    safe_labels = torch.where(mask, shifted, torch.zeros_like(shifted)).long()
    bi, ti = mask.nonzero(as_tuple=True)
    logp_valid = _TokenLogProbs.apply(logits, safe_labels, bi, ti, int(chunk_size))
    per_token = torch.zeros(mask.shape, dtype=cdtype, device=logits.device)
    per_token = per_token.index_put((bi, ti), logp_valid)  # out-of-place: differentiable scatter
    return per_token, mask


def sequence_log_probs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the label log-probabilities per sequence and the number of label tokens.

    Drop-in, memory-lean equivalent of LF's ``get_batch_logps(logits, labels)`` (same values to float32
    round-off and the same gradients): ``labels[:, 1:]`` are scored under ``logits[:, :-1]``, labels
    equal to ``ignore_index`` are skipped. A row whose labels are all ignored gives ``(0.0, 0)`` and a
    zero gradient.

    Returns:
        ``(logps, valid_length)``: ``logps`` ``[B]`` float32 (float64 for float64 logits),
        ``valid_length`` ``[B]`` int64.
    """
    per_token, mask = token_log_probs(logits, labels, ignore_index=ignore_index, chunk_size=chunk_size)
    return per_token.sum(-1), mask.sum(-1)
