"""``sequence_log_probs`` / ``token_log_probs`` against LLaMA-Factory's ``get_batch_logps``.

Reference: ``llamafactory.train.trainer_utils.get_batch_logps`` (LF 0.9.5). For bf16/fp16 logits the
reference is what LF's DPO trainer does: ``logits.to(torch.float32)`` then ``get_batch_logps``.
"""

from __future__ import annotations

import pytest
import torch
from llamafactory.train.trainer_utils import get_batch_logps

from llamafactory_minor.objectives import sequence_log_probs, token_log_probs
from llamafactory_minor_core import logprobs as logprobs_mod  # the one implementation (objectives re-exports it)

IGNORE = -100


def make_batch(B=4, T=13, V=37, dtype=torch.float32, seed=0, scale=3.0):
    """Random logits and labels: masked prompts of different lengths, right padding, one all-masked row."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g) * scale).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    for b in range(B):
        prompt = (b * 3) % (T - 2)
        labels[b, :prompt] = IGNORE  # prompt
        labels[b, T - b :] = IGNORE  # right padding (b tokens)
    labels[B - 1] = IGNORE  # a row without any answer token
    return logits, labels


def lf_reference(logits, labels, weights):
    """LF path: upcast to float32 as LF's DPO trainer does, then get_batch_logps; grads wrt ``logits``."""
    leaf = logits.detach().clone().requires_grad_(True)
    logps, length = get_batch_logps(leaf.to(torch.float32), labels)
    (logps * weights).sum().backward()
    return logps.detach(), length, leaf.grad


def ours(logits, labels, weights, chunk_size=1024):
    leaf = logits.detach().clone().requires_grad_(True)
    logps, length = sequence_log_probs(leaf, labels, chunk_size=chunk_size)
    (logps * weights).sum().backward()
    return logps.detach(), length, leaf.grad


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 7, 1024])
def test_float32_values_and_grads_match_lf(chunk_size):
    # chunk sizes 3, 5, 7 do not divide the number of valid rows (or T): the last chunk is partial.
    logits, labels = make_batch()
    weights = torch.tensor([1.0, -0.5, 2.0, 3.0])  # a generic upstream gradient, not just ones
    ref_v, ref_n, ref_g = lf_reference(logits, labels, weights)
    v, n, g = ours(logits, labels, weights, chunk_size)
    assert v.dtype == torch.float32 and n.dtype == torch.int64
    assert torch.equal(n, ref_n)
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_match_lf_upcast(dtype):
    logits, labels = make_batch(B=3, T=17, V=64, dtype=dtype, seed=1)
    weights = torch.tensor([0.7, -1.3, 2.0])
    ref_v, ref_n, ref_g = lf_reference(logits, labels, weights)
    v, n, g = ours(logits, labels, weights, chunk_size=4)
    assert v.dtype == torch.float32
    assert g.dtype == dtype  # gradient written in the logits' own dtype
    assert torch.equal(n, ref_n)
    # Both upcast the same half-precision values to float32: float32-level agreement.
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    # Both compute the float32 gradient and round it once to the half dtype; allow 1 ulp.
    torch.testing.assert_close(g.float(), ref_g.float(), rtol=1e-2, atol=1e-5)
    assert (g.float() - ref_g.float()).abs().max() <= 2**-7  # at most one bf16 ulp around |g|<=2


def test_matches_lf_without_float32_upcast():
    """LF's get_batch_logps called directly on float32 logits (SFT-style path), large vocab chunk."""
    logits, labels = make_batch(B=2, T=9, V=1000, seed=2)
    weights = torch.ones(2)
    ref_v, _, ref_g = lf_reference(logits, labels, weights)
    v, _, g = ours(logits, labels, weights, chunk_size=2)
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)


def test_non_contiguous_inputs():
    logits, labels = make_batch(B=3, T=11, V=29, seed=3)
    weights = torch.tensor([1.0, 2.0, -1.0])
    ref_v, ref_n, ref_g = lf_reference(logits, labels, weights)

    # Same values laid out as [T, B, V] and as a strided slice of a wider vocab, then viewed back.
    leaf_t = logits.transpose(0, 1).contiguous().detach().requires_grad_(True)
    wide = torch.zeros(3, 11, 58)
    wide[..., ::2] = logits
    leaf_w = wide.detach().requires_grad_(True)
    labels_nc = labels.t().contiguous().t()  # non-contiguous labels
    assert not labels_nc.is_contiguous()
    for leaf, view in (
        (leaf_t, lambda x: x.transpose(0, 1)),
        (leaf_w, lambda x: x[..., ::2]),
    ):
        x = view(leaf)
        assert not x.is_contiguous()
        v, n = sequence_log_probs(x, labels_nc, chunk_size=4)
        (v * weights).sum().backward()
        torch.testing.assert_close(v.detach(), ref_v, rtol=1e-5, atol=1e-5)
        assert torch.equal(n, ref_n)
        torch.testing.assert_close(view(leaf.grad), ref_g, rtol=1e-5, atol=1e-6)
    # The strided vocabulary slots that are not logits get no gradient.
    assert torch.count_nonzero(leaf_w.grad[..., 1::2]) == 0


def test_all_masked_rows_zero_sum_zero_length_zero_grad():
    logits, labels = make_batch(B=3, T=8, V=16, dtype=torch.bfloat16, seed=4)
    labels[1] = IGNORE
    labels[2, 1:] = IGNORE  # only position 0 is a label, and it is shifted away: nothing scored
    leaf = logits.detach().clone().requires_grad_(True)
    v, n = sequence_log_probs(leaf, labels, chunk_size=3)
    v.sum().backward()
    assert n[1] == 0 and n[2] == 0
    assert v[1] == 0 and v[2] == 0
    assert torch.isfinite(v).all() and torch.isfinite(leaf.grad.float()).all()
    assert torch.count_nonzero(leaf.grad[1:]) == 0


def test_everything_masked_and_single_position():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.full((2, 5), IGNORE)
    v, n = sequence_log_probs(logits, labels)
    v.sum().backward()
    assert torch.equal(v, torch.zeros(2)) and torch.equal(n, torch.zeros(2, dtype=torch.long))
    assert torch.count_nonzero(logits.grad) == 0
    # T == 1: nothing to predict after the shift.
    one = torch.randn(2, 1, 7, requires_grad=True)
    v1, n1 = sequence_log_probs(one, torch.zeros(2, 1, dtype=torch.long))
    assert v1.shape == (2,) and torch.equal(n1, torch.zeros(2, dtype=torch.long)) and torch.equal(v1, torch.zeros(2))


def test_last_position_and_prompt_rows_get_zero_grad():
    logits, labels = make_batch(B=2, T=10, V=12, seed=5)
    leaf = logits.clone().requires_grad_(True)
    v, _ = sequence_log_probs(leaf, labels, chunk_size=3)
    v.sum().backward()
    assert torch.count_nonzero(leaf.grad[:, -1]) == 0  # logits[:, -1] predicts nothing
    shifted_mask = labels[:, 1:] != IGNORE
    assert torch.count_nonzero(leaf.grad[:, :-1][~shifted_mask]) == 0
    # Each scored row's gradient is onehot - softmax: sums to zero over the vocabulary.
    torch.testing.assert_close(leaf.grad.sum(-1), torch.zeros(2, 10), atol=1e-6, rtol=0)


def test_token_log_probs_building_block():
    logits, labels = make_batch(B=3, T=9, V=21, seed=6)
    per_tok, mask = token_log_probs(logits, labels, chunk_size=2)
    assert per_tok.shape == (3, 8) and mask.dtype == torch.bool
    assert torch.equal(mask, labels[:, 1:] != IGNORE)
    assert torch.count_nonzero(per_tok[~mask]) == 0
    ref = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(per_tok[mask].double(), ref[mask], rtol=1e-6, atol=1e-6)
    assert (per_tok[mask] <= 0).all()


def test_custom_ignore_index():
    logits, labels = make_batch(B=2, T=7, V=9, seed=7)
    labels2 = torch.where(labels == IGNORE, torch.full_like(labels, 8), labels)  # 8 acts as ignore
    labels2[labels == 8] = 0
    ref_labels = torch.where(labels2 == 8, torch.full_like(labels2, IGNORE), labels2)
    v, n = sequence_log_probs(logits, labels2, ignore_index=8)
    rv, rn = get_batch_logps(logits, ref_labels)
    torch.testing.assert_close(v, rv, rtol=1e-5, atol=1e-5)
    assert torch.equal(n, rn)


def test_float64_gradcheck():
    logits, labels = make_batch(B=3, T=6, V=5, dtype=torch.float64, seed=8)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sequence_log_probs(x, labels, chunk_size=2)[0], (logits,))
    assert sequence_log_probs(logits, labels)[0].dtype == torch.float64


def test_extreme_logits_are_finite():
    logits, labels = make_batch(B=2, T=6, V=10, seed=9)
    logits = logits * 1e4  # huge logit gaps: log-probs down to about -1e5
    leaf = logits.clone().requires_grad_(True)
    v, _ = sequence_log_probs(leaf, labels)
    v.sum().backward()
    ref, _ = get_batch_logps(logits, labels)
    assert torch.isfinite(v).all() and torch.isfinite(leaf.grad).all()
    torch.testing.assert_close(v.detach(), ref, rtol=1e-5, atol=1e-2)


def test_no_grad_reference_path_and_inputs_untouched():
    logits, labels = make_batch(B=2, T=7, V=11, dtype=torch.bfloat16, seed=10)
    before_l, before_y = logits.clone(), labels.clone()
    versions = (logits._version, labels._version)
    with torch.no_grad():
        v, _n = sequence_log_probs(logits, labels)
    assert not v.requires_grad
    assert torch.equal(logits, before_l) and torch.equal(labels, before_y)
    assert (
        logits._version,
        labels._version,
    ) == versions  # no in-place op on the inputs


def test_autograd_saves_no_full_size_float_buffer():
    """Lean by construction: besides the input logits themselves, nothing of size ~B*T*V is kept."""
    B, T, V = 2, 16, 257
    logits = torch.randn(B, T, V, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B, T))
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        v, _ = sequence_log_probs(logits, labels, chunk_size=4)
    big = [t for t in saved if t.numel() >= B * (T - 1) * V]
    assert all(t.data_ptr() == logits.data_ptr() and t.dtype == torch.bfloat16 for t in big), [
        (t.dtype, tuple(t.shape)) for t in big
    ]
    v.sum().backward()


def test_float32_work_buffer_is_one_chunk(monkeypatch):
    """Every float32 rows-buffer filled by the kernel has at most ``chunk_size`` rows; masked rows are skipped."""
    sizes = []
    real = logprobs_mod._load_rows

    def spy(logits, bi, ti, out):
        assert out.dtype == torch.float32
        sizes.append(out.shape[0])
        return real(logits, bi, ti, out)

    monkeypatch.setattr(logprobs_mod, "_load_rows", spy)
    logits, labels = make_batch(B=3, T=20, V=50, dtype=torch.bfloat16, seed=11)
    logits.requires_grad_(True)
    v, _ = sequence_log_probs(logits, labels, chunk_size=6)
    v.sum().backward()
    assert sizes and max(sizes) <= 6
    assert sum(sizes) == 2 * int((labels[:, 1:] != IGNORE).sum())  # forward + backward, valid rows only


def test_chunk_rows_capped_for_large_vocab(monkeypatch):
    assert logprobs_mod._chunk_rows(1024, 152064) == (1 << 26) // 152064 == 441
    assert logprobs_mod._chunk_rows(1024, 32000) == 1024
    assert logprobs_mod._chunk_rows(4, 10**9) == 1
    # The cap changes only the chunking, never the result.
    monkeypatch.setattr(logprobs_mod, "_MAX_CHUNK_ELEMENTS", 37 * 2)  # 2 rows of V=37 per chunk
    logits, labels = make_batch(seed=12)
    weights = torch.tensor([1.0, -0.5, 2.0, 3.0])
    ref_v, _, ref_g = lf_reference(logits, labels, weights)
    v, _, g = ours(logits, labels, weights, chunk_size=1024)
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)


def test_argument_validation():
    with pytest.raises(ValueError):
        sequence_log_probs(torch.randn(2, 5, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError):
        sequence_log_probs(torch.randn(2, 5, 3), torch.zeros(2, 5, dtype=torch.long), chunk_size=0)
