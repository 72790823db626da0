"""The objectives against the papers' closed-form gradients, hand-computed values and edge cases.

Gradients are taken with ``torch.autograd.grad`` in float64 and compared with the papers' formulas
(to 1e-6, in practice ~1e-15). Notation: logratio = policy_logps - ref_logps, sigma = sigmoid.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from llamafactory_minor.objectives import (
    deviation_metric,
    dpo_loss,
    dpop_loss,
    minordpo_loss,
    minorsft_coef,
    minorsft_loss,
    normalized_rewards,
    poft_loss,
    sftdpo_loss,
)

F64 = torch.float64
sig = torch.sigmoid


def t(*values, grad=False):
    return torch.tensor(values, dtype=F64, requires_grad=grad)


def grad_of(losses, *inputs):
    """Gradients of ``sum(losses)`` (each sample's own gradient, since samples are independent)."""
    return torch.autograd.grad(losses.sum(), inputs, allow_unused=True)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def rand_logps(n, seed, scale=20.0):
    g = torch.Generator().manual_seed(seed)
    return (-torch.rand(n, generator=g, dtype=F64) * scale).requires_grad_(True), -torch.rand(
        n, generator=g, dtype=F64
    ) * scale


# --------------------------------------------------------------------------------------------------
# SFT using DPO (MinorSFT paper Eq. 3, gradient Eq. 4)
# --------------------------------------------------------------------------------------------------


def test_sftdpo_gradient_is_eq4():
    pol, ref = rand_logps(16, 0)
    for beta in (0.04, 0.1, 1.0):
        (g,) = grad_of(sftdpo_loss(pol, ref, beta), pol)
        # Eq. 4: grad = -beta * sigma(-beta * log(pi/pi_ref)) * grad log pi
        close(g, -beta * sig(-beta * (pol - ref)).detach())


def test_sftdpo_hand_values():
    # beta = 0.1, logratio = 2 -> -log sigma(0.2) = log(1 + e^-0.2) = log(1.818730753) = 0.5981388694
    # beta = 0.1, logratio = 0 -> log 2 = 0.6931471806
    losses = sftdpo_loss(t(-10.0, -5.0), t(-12.0, -5.0), beta=0.1)
    close(losses, t(0.5981388693815918, math.log(2)), tol=1e-12)


# --------------------------------------------------------------------------------------------------
# MinorSFT (Eq. 7)
# --------------------------------------------------------------------------------------------------


def test_minorsft_gradient_is_eq7():
    pol, ref = rand_logps(16, 1)
    m = torch.arange(1, 17)
    for beta in (0.04, 0.1, 2.0):
        (g,) = grad_of(minorsft_loss(pol, ref, m, beta), pol)
        # Eq. 7: grad = -(2/m) * sigma(-beta * log(pi/pi_ref)) * grad log pi
        close(g, -(2.0 / m.to(F64)) * sig(-beta * (pol - ref)).detach())


def test_minorsft_starts_as_length_averaged_sft():
    # pi_theta == pi_ref: coefficient 2 * sigma(0) = 1, gradient -(1/m) = raw SFT's Eq. 5.
    pol = t(-7.0, -30.0, grad=True)
    (g,) = grad_of(minorsft_loss(pol, pol.detach().clone(), torch.tensor([5, 12]), 0.04), pol)
    close(g, t(-1 / 5, -1 / 12), tol=1e-12)
    close(minorsft_coef(pol, pol.detach(), 0.04), t(1.0, 1.0), tol=1e-12)


def test_minorsft_hand_values():
    # beta = 0.1, logratio = 2, m = 4:
    #   loss = -(2 / (0.1 * 4)) * log sigma(0.2) = 5 * 0.5981388694 = 2.9906943469
    #   grad = -(2/4) * sigma(-0.2) = -0.5 * 0.4501660027 = -0.2250830013
    #   coef = 2 * sigma(-0.2) = 0.9003320054
    pol = t(-10.0, grad=True)
    ref = t(-12.0)
    loss = minorsft_loss(pol, ref, torch.tensor([4]), 0.1)
    close(loss, t(2.9906943469079588), tol=1e-12)
    (g,) = grad_of(loss, pol)
    close(g, t(-0.22508300134376108), tol=1e-12)
    close(minorsft_coef(pol, ref, 0.1), t(0.9003320053750443), tol=1e-12)
    assert not minorsft_coef(pol, ref, 0.1).requires_grad


def test_minorsft_zero_length_rows():
    pol = t(0.0, -3.0, -50.0, grad=True)
    ref = t(0.0, -1.0, -40.0)
    losses = minorsft_loss(pol, ref, torch.tensor([0, 3, 0]), 0.1)
    (g,) = grad_of(losses, pol)
    assert losses[0] == 0 and losses[2] == 0 and losses[1] > 0
    assert g[0] == 0 and g[2] == 0 and g[1] < 0
    assert torch.isfinite(losses).all() and torch.isfinite(g).all()


# --------------------------------------------------------------------------------------------------
# PoFT (Eq. 6-8), aggregations (C.2), bi-PoFT (Eq. 12)
# --------------------------------------------------------------------------------------------------


def poft_tau_from_probabilities(policy_logps, t0, aligned_logps, tj):
    """Eq. 8 literally: tau = G / (G + p_theta^(1/T0)), G = (prod_j p_j^(1/T_j))^(1/M), on raw p."""
    p_theta = torch.exp(policy_logps)
    p_j = torch.exp(aligned_logps)
    M = aligned_logps.shape[1]
    G = torch.prod(p_j ** (1.0 / tj), dim=1) ** (1.0 / M)
    return G / (G + p_theta ** (1.0 / t0))


def poft_batch():
    # Log-probs small enough that the raw probabilities of Eq. 8 are representable in float64.
    pol = t(-12.0, -3.5, -40.0, -8.0, grad=True)
    t0 = torch.tensor([6, 2, 20, 8])
    aligned = t_rows(
        [-9.0, -20.0, -11.0],
        [-1.0, -6.0, -2.5],
        [-30.0, -55.0, -41.0],
        [-8.0, -8.0, -16.0],
    )
    tj = torch.tensor([[5, 8, 7], [2, 3, 2], [18, 25, 21], [8, 4, 16]])
    return pol, t0, aligned, tj


def t_rows(*rows):
    return torch.tensor(rows, dtype=F64)


def test_poft_gradient_is_eq7_with_tau_from_eq8():
    pol, t0, aligned, tj = poft_batch()
    losses, r_theta, r_aligned = poft_loss(pol, t0, aligned, tj)
    (g,) = grad_of(losses, pol)
    tau = poft_tau_from_probabilities(pol.detach(), t0.to(F64), aligned, tj.to(F64))
    # Eq. 7: grad = -(1/T0) (1/p) tau grad p = -(tau/T0) grad log p
    close(g, -tau / t0.to(F64))
    # and tau = sigma(r_aligned - r_theta) (Eq. 9 with the mean aggregation)
    close(tau, sig(r_aligned - r_theta))


def test_poft_gradient_with_beta_gamma():
    pol, t0, aligned, tj = poft_batch()
    beta, gamma = 2.5, 0.3
    losses, r_theta, r_aligned = poft_loss(pol, t0, aligned, tj, beta=beta, gamma=gamma)
    (g,) = grad_of(losses, pol)
    close(g, -(beta / t0.to(F64)) * sig(-(beta * (r_theta - r_aligned) + gamma)))


def test_bi_poft_noise_rows_gradient():
    # Eq. 12, D_SFT- rows: -log sigma(r_aligned - r_theta); d/d log p = +(1/T0) * (1 - tau).
    pol, t0, aligned, tj = poft_batch()
    noise = torch.tensor([True, False, True, False])
    losses, _, _ = poft_loss(pol, t0, aligned, tj, noise_mask=noise)
    (g,) = grad_of(losses, pol)
    tau = poft_tau_from_probabilities(pol.detach(), t0.to(F64), aligned, tj.to(F64))
    expected = torch.where(noise, (1 - tau) / t0.to(F64), -tau / t0.to(F64))
    close(g, expected)
    # noise rows push log p_theta *down*, clean rows push it up
    assert (g[noise] > 0).all() and (g[~noise] < 0).all()
    # beta/gamma apply the same way on noise rows: -logsigmoid(beta * (r_aligned - r_theta) + gamma)
    losses2, r_theta, r_aligned = poft_loss(pol, t0, aligned, tj, beta=0.5, gamma=0.2, noise_mask=noise)
    close(
        losses2[noise],
        -torch.nn.functional.logsigmoid(0.5 * (r_aligned - r_theta) + 0.2)[noise],
        tol=1e-12,
    )


def test_poft_hand_values_and_aggregations():
    # log p_theta = -6 over T0 = 3 -> r_theta = -2
    # aligned: -4 over 2 tokens -> -2 ; -9 over 3 tokens -> -3
    #   mean: r_aligned = -2.5 -> loss = -log sigma(0.5) = log(1 + e^-0.5) = 0.4740769842
    #   max : r_aligned = -2   -> loss = log 2                            = 0.6931471806
    #   min : r_aligned = -3   -> loss = log(1 + e^-1)                    = 0.3132616875
    #   bi-PoFT noise row, mean: -log sigma(-0.5) = 0.5 + 0.4740769842    = 0.9740769842
    pol = t(-6.0, grad=True)
    aligned = t_rows([-4.0, -9.0])
    tj = torch.tensor([[2, 3]])
    expect = {
        "mean": (0.4740769841801067, -2.5),
        "max": (math.log(2), -2.0),
        "min": (0.31326168751822286, -3.0),
    }
    for agg, (loss_value, r_al) in expect.items():
        losses, r_theta, r_aligned = poft_loss(pol, torch.tensor([3]), aligned, tj, aggregation=agg)
        close(losses, t(loss_value), tol=1e-12)
        close(r_theta, t(-2.0), tol=1e-12)
        close(r_aligned, t(r_al), tol=1e-12)
        assert not r_theta.requires_grad and not r_aligned.requires_grad
    losses, _, _ = poft_loss(pol, torch.tensor([3]), aligned, tj, noise_mask=torch.tensor([True]))
    close(losses, t(0.9740769841801067), tol=1e-12)


def test_poft_aggregation_gradients():
    pol, t0, aligned, tj = poft_batch()
    r_j = aligned / tj.to(F64)
    for agg, reduce in (("max", lambda r: r.amax(1)), ("min", lambda r: r.amin(1))):
        losses, _r_theta, r_aligned = poft_loss(pol, t0, aligned, tj, aggregation=agg)
        close(r_aligned, reduce(r_j), tol=1e-12)
        (g,) = grad_of(losses, pol)
        close(g, -sig(reduce(r_j) - pol.detach() / t0.to(F64)) / t0.to(F64))


def test_poft_aligned_side_carries_no_gradient():
    pol, t0, aligned, tj = poft_batch()
    aligned = aligned.clone().requires_grad_(True)
    losses, _, r_aligned = poft_loss(pol, t0, aligned, tj)
    g_pol, g_al = grad_of(losses, pol, aligned)
    assert g_al is None and g_pol is not None and not r_aligned.requires_grad


def test_poft_zero_length_rows_and_models():
    pol = t(-6.0, 0.0, -6.0, -6.0, grad=True)
    t0 = torch.tensor([3, 0, 3, 3])
    aligned = t_rows([-4.0, -9.0], [-1.0, -1.0], [0.0, 0.0], [-4.0, 123.0])
    tj = torch.tensor([[2, 3], [1, 1], [0, 0], [2, 0]])  # row 2: no aligned tokens; row 3: model 2 has none
    losses, r_theta, r_aligned = poft_loss(pol, t0, aligned, tj, aggregation="mean")
    (g,) = grad_of(losses, pol)
    assert losses[1] == 0 and losses[2] == 0 and g[1] == 0 and g[2] == 0
    assert r_theta[1] == 0 and r_aligned[1] == 0 and r_aligned[2] == 0
    # row 3 ignores the model with T_j = 0: r_aligned = -4/2 = -2 = r_theta -> loss log 2
    close(losses[3], torch.tensor(math.log(2), dtype=F64), tol=1e-12)
    assert torch.isfinite(losses).all() and torch.isfinite(g).all()
    for agg in ("max", "min"):
        losses, _, r_al = poft_loss(pol, t0, aligned, tj, aggregation=agg)
        assert torch.isfinite(losses).all() and torch.isfinite(r_al).all()
        close(r_al[3], torch.tensor(-2.0, dtype=F64), tol=1e-12)


def test_poft_single_aligned_model_as_1d():
    pol = t(-6.0, -10.0, grad=True)
    a, b = (
        poft_loss(pol, torch.tensor([3, 5]), t(-4.0, -10.0), torch.tensor([2, 5])),
        poft_loss(pol, torch.tensor([3, 5]), t_rows([-4.0], [-10.0]), torch.tensor([[2], [5]])),
    )
    for x, y in zip(a, b):
        close(x, y, tol=0)


def test_poft_bad_aggregation():
    with pytest.raises(ValueError, match="aggregation"):
        poft_loss(
            t(-1.0),
            torch.tensor([1]),
            t_rows([-1.0]),
            torch.tensor([[1]]),
            aggregation="median",
        )


# --------------------------------------------------------------------------------------------------
# DPO family: TRL 0.24 parity, DPO gradient (MinorDPO paper Eq. 3)
# --------------------------------------------------------------------------------------------------


def pair_batch(seed, n=16):
    g = torch.Generator().manual_seed(seed)
    vals = [-torch.rand(n, generator=g, dtype=F64) * 30 for _ in range(4)]
    pc, pr = vals[0].requires_grad_(True), vals[1].requires_grad_(True)
    return pc, pr, vals[2], vals[3]


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_dpo_matches_trl_0_24(loss_type, label_smoothing):
    # Import LF first: in this environment TRL's trainer modules import cleanly only after LF did.
    import llamafactory.train.trainer_utils  # noqa: F401
    from trl.trainer.dpo_config import FDivergenceType
    from trl.trainer.dpo_trainer import DPOTrainer

    beta = 0.3
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu")),
        reference_free=False,
        f_divergence_type=FDivergenceType.REVERSE_KL,
        beta=beta,
        label_smoothing=label_smoothing,
    )
    pc, pr, rc, rr = pair_batch(3)
    pc.data[:4] = rc[:4] + 5  # a few pairs with a large positive margin (hinge inactive)
    ours = dpo_loss(pc, pr, rc, rr, beta, loss_type=loss_type, label_smoothing=label_smoothing)
    trl = DPOTrainer.dpo_loss(fake, pc, pr, rc, rr, loss_type=loss_type)
    for a, b in zip(ours, trl):
        close(a, b, tol=1e-12)
    g_ours = grad_of(ours[0], pc, pr)
    g_trl = grad_of(trl[0], pc, pr)
    for a, b in zip(g_ours, g_trl):
        close(a, b, tol=1e-12)


def test_dpo_sigmoid_gradient_is_minordpo_eq3():
    pc, pr, rc, rr = pair_batch(4)
    beta = 0.1
    losses, cr, rj = dpo_loss(pc, pr, rc, rr, beta)
    g_c, g_r = grad_of(losses, pc, pr)
    margin = (pc - rc) - (pr - rr)
    coef = beta * sig(-beta * margin).detach()
    # Eq. 3: grad = -beta sigma(-beta lr_w + beta lr_l) [grad log pi(y_w) - grad log pi(y_l)]
    close(g_c, -coef)
    close(g_r, coef)
    close(cr, (beta * (pc - rc)).detach(), tol=1e-12)
    close(rj, (beta * (pr - rr)).detach(), tol=1e-12)
    assert not cr.requires_grad and not rj.requires_grad


def test_dpo_hand_values():
    # pc=-10, pr=-12, rc=-11, rr=-11.5 -> logits = (-10 + 12) - (-11 + 11.5) = 2 - 0.5 = 1.5; beta = 0.1
    #   sigmoid:        -log sigma(0.15)                                   = 0.6209570478
    #   sigmoid, eps=.1: 0.9 * 0.6209570478 + 0.1 * (0.15 + 0.6209570478)  = 0.6359570478
    #   hinge:          relu(1 - 0.15)                                     = 0.85
    #   ipo:            (1.5 - 1/(2*0.1))^2 = (1.5 - 5)^2                   = 12.25
    args = (t(-10.0), t(-12.0), t(-11.0), t(-11.5), 0.1)
    close(dpo_loss(*args)[0], t(0.6209570477895321), tol=1e-12)
    close(dpo_loss(*args, label_smoothing=0.1)[0], t(0.6359570477895321), tol=1e-12)
    close(dpo_loss(*args, loss_type="hinge")[0], t(0.85), tol=1e-12)
    close(dpo_loss(*args, loss_type="ipo")[0], t(12.25), tol=1e-12)
    _, cr, rj = dpo_loss(*args)
    close(cr, t(0.1), tol=1e-12)  # 0.1 * (-10 + 11)
    close(rj, t(-0.05), tol=1e-12)  # 0.1 * (-12 + 11.5)


def test_dpo_argument_validation():
    args = (t(-1.0), t(-2.0), t(-1.0), t(-2.0), 0.1)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*args, loss_type="kto_pair")
    with pytest.raises(ValueError):
        dpo_loss(*args, label_smoothing=0.7)
    with pytest.raises(ValueError):
        dpo_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), 0.0)


# --------------------------------------------------------------------------------------------------
# MinorDPO (Eq. 6)
# --------------------------------------------------------------------------------------------------


def test_minordpo_gradient():
    pc, pr, rc, rr = pair_batch(5, n=32)
    pr.data[:3] = rr[:3]  # logratio_l exactly 0: the max(0, .) is inactive there too
    beta = 0.2
    losses, cr, rj = minordpo_loss(pc, pr, rc, rr, beta)
    g_c, g_r = grad_of(losses, pc, pr)
    lw, ll = (pc - rc).detach(), (pr - rr).detach()
    s = sig(-(beta * lw - beta * torch.clamp(ll, min=0)))
    close(g_c, -beta * s)
    close(g_r, beta * s * (ll > 0).to(F64))
    assert (g_r[ll <= 0] == 0).all() and (ll <= 0).any() and (ll > 0).any()
    # with logratio_l <= 0 it is exactly SFT using DPO on the chosen answer (MinorSFT paper Eq. 3)
    neg = ll <= 0
    close(losses[neg], sftdpo_loss(pc, rc, beta)[neg], tol=1e-12)
    close(cr, beta * lw, tol=1e-12)
    close(rj, beta * ll, tol=1e-12)


def test_minordpo_hand_values():
    # beta = 0.1, lr_w = -10 - (-11) = 1
    #   lr_l = -12 - (-11.5) = -0.5 -> max(0, -0.5) = 0 -> -log sigma(0.1)         = 0.6443966601
    #   lr_l = -11 - (-11.5) = +0.5 -> -log sigma(0.1 - 0.05) = -log sigma(0.05)    = 0.6684596480
    close(
        minordpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), 0.1)[0],
        t(0.6443966600735709),
        tol=1e-12,
    )
    close(
        minordpo_loss(t(-10.0), t(-11.0), t(-11.0), t(-11.5), 0.1)[0],
        t(0.6684596480132863),
        tol=1e-12,
    )


# --------------------------------------------------------------------------------------------------
# DPOP (MinorDPO paper Eq. 5, Smaug)
# --------------------------------------------------------------------------------------------------


def test_dpop_gradient():
    pc, pr, rc, rr = pair_batch(6, n=32)
    beta, lam = 0.1, 50.0
    losses, _, _ = dpop_loss(pc, pr, rc, rr, beta, lam)
    g_c, g_r = grad_of(losses, pc, pr)
    lw, ll = (pc - rc).detach(), (pr - rr).detach()
    z = beta * (lw - ll) - beta * lam * torch.clamp(-lw, min=0)
    s = sig(-z)
    close(g_c, -beta * s * (1 + lam * (lw < 0).to(F64)))
    close(g_r, beta * s)
    assert (lw < 0).any() and (lw > 0).any()
    # lam = 0 is plain DPO
    close(
        dpop_loss(pc, pr, rc, rr, beta, 0.0)[0],
        dpo_loss(pc, pr, rc, rr, beta)[0],
        tol=1e-12,
    )


def test_dpop_hand_values():
    # beta = 0.1, lam = 50
    #   pc=-12, rc=-11 -> lr_w = -1 ; pr=-12, rr=-11.5 -> lr_l = -0.5
    #   z = 0.1 * (-1 + 0.5) - 0.1 * 50 * max(0, 1) = -0.05 - 5 = -5.05 -> -log sigma(-5.05) = 5.0563888810
    #   pc=-10 -> lr_w = +1: penalty off, z = 0.1 * 1.5 = 0.15 -> 0.6209570478 (= DPO)
    close(
        dpop_loss(t(-12.0), t(-12.0), t(-11.0), t(-11.5), 0.1)[0],
        t(5.056388881013102),
        tol=1e-12,
    )
    close(
        dpop_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), 0.1)[0],
        t(0.6209570477895321),
        tol=1e-12,
    )


# --------------------------------------------------------------------------------------------------
# Metrics (MinorSFT Eq. 8)
# --------------------------------------------------------------------------------------------------


def test_normalized_rewards_and_deviation_metric():
    # logratios 2, -3, 5 over m = 4, 6, 0 -> 0.5, -0.5, 0 (m = 0 -> 0 and left out of the mean)
    pol = t(-10.0, -9.0, -1.0, grad=True)
    ref = t(-12.0, -6.0, -6.0)
    m = torch.tensor([4, 6, 0])
    r = normalized_rewards(pol, ref, m)
    close(r, t(0.5, -0.5, 0.0), tol=1e-12)
    assert not r.requires_grad
    # Eq. 8: (1/N) sum (1/m) log(pi/pi_ref) over the N = 2 rows with answers = (0.5 - 0.5) / 2 = 0
    close(deviation_metric(pol, ref, m), torch.tensor(0.0, dtype=F64), tol=1e-12)
    close(
        deviation_metric(pol, ref, torch.tensor([4, 2, 0])),
        torch.tensor((0.5 - 1.5) / 2, dtype=F64),
        tol=1e-12,
    )
    assert deviation_metric(pol, ref, torch.zeros(3, dtype=torch.long)) == 0
    assert deviation_metric(pol, ref, m).dim() == 0


# --------------------------------------------------------------------------------------------------
# Common properties: extreme log-ratios, dtypes, devices, no in-place ops on inputs
# --------------------------------------------------------------------------------------------------


def all_losses(a, b, c, d, m):
    """Every objective as a function of four [B] log-prob tensors (a, b carry the gradient)."""
    n = a.shape[0]
    tj = torch.stack([m, m + 1], 1)
    return {
        "sftdpo": sftdpo_loss(a, c, 0.1),
        "minorsft": minorsft_loss(a, c, m, 0.04),
        "poft": poft_loss(a, m, torch.stack([c, d], 1), tj, beta=1.0, gamma=0.5)[0],
        "bipoft": poft_loss(
            a,
            m,
            torch.stack([c, d], 1),
            tj,
            noise_mask=torch.arange(n) % 2 == 0,
            aggregation="max",
        )[0],
        "dpo_sigmoid": dpo_loss(a, b, c, d, 0.1, label_smoothing=0.1)[0],
        "dpo_hinge": dpo_loss(a, b, c, d, 0.1, loss_type="hinge")[0],
        "dpo_ipo": dpo_loss(a, b, c, d, 0.1, loss_type="ipo")[0],
        "minordpo": minordpo_loss(a, b, c, d, 0.1)[0],
        "dpop": dpop_loss(a, b, c, d, 0.1, 50.0)[0],
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logratios_finite(dtype):
    big = 1e4
    a = torch.tensor([0.0, -big, -big, 0.0, -1.0, -big], dtype=dtype, requires_grad=True)
    b = torch.tensor([-big, 0.0, -big, 0.0, -big, -1.0], dtype=dtype, requires_grad=True)
    c = torch.tensor([-big, 0.0, 0.0, -big, -1.0, -big], dtype=dtype)
    d = torch.tensor([0.0, -big, 0.0, -big, -big, 0.0], dtype=dtype)
    m = torch.tensor([1, 1, 0, 3, 1, 2])
    for name, losses in all_losses(a, b, c, d, m).items():
        assert losses.dtype == dtype, name
        assert torch.isfinite(losses).all(), (name, losses)
        ga, gb = torch.autograd.grad(losses.sum(), (a, b), allow_unused=True)
        for g in (ga, gb):
            assert g is None or torch.isfinite(g).all(), (name, g)
    # values saturate linearly, they do not overflow: -log sigma(-1e4) = 1e4
    close(sftdpo_loss(t(-big), t(0.0), 1.0), t(big), tol=1e-12)
    close(minorsft_loss(t(-big), t(0.0), torch.tensor([1]), 1.0), t(2 * big), tol=1e-12)


def test_inputs_not_modified_in_place():
    a, b, c, d = (torch.randn(5, dtype=F64) * 10 for _ in range(4))
    a.requires_grad_(True)
    m = torch.tensor([1, 0, 3, 4, 5])
    copies = [x.detach().clone() for x in (a, b, c, d, m)]
    versions = [x._version for x in (a, b, c, d, m)]
    losses = all_losses(a, b, c, d, m)
    sum(v.sum() for v in losses.values()).backward()
    normalized_rewards(a, c, m), deviation_metric(a, c, m), minorsft_coef(a, c, 0.1)
    for x, x0, v in zip((a, b, c, d, m), copies, versions):
        assert torch.equal(x.detach(), x0) and x._version == v


def test_any_device_meta():
    """No host round-trips or hard-coded devices: everything runs on the shape-only 'meta' device."""
    a, b, c, d = (torch.empty(4, device="meta") for _ in range(4))
    m = torch.empty(4, dtype=torch.long, device="meta")
    for name, losses in all_losses(a, b, c, d, m).items():
        assert losses.device.type == "meta" and losses.shape == (4,), name
    assert normalized_rewards(a, c, m).device.type == "meta"
    assert deviation_metric(a, c, m).device.type == "meta"


def test_beta_validation():
    for fn in (
        lambda: sftdpo_loss(t(-1.0), t(-1.0), 0.0),
        lambda: minorsft_loss(t(-1.0), t(-1.0), torch.tensor([1]), -1),
    ):
        with pytest.raises(ValueError, match="beta"):
            fn()
