"""``pref_ftx`` on minorsft / sftdpo / poft: LF's SFT term ``gamma * (-log pi(y|x) / m)`` added per sample.

Float64 autograd gradients of the trainers' own ``compute_objective`` against the closed form
(the objective's gradient plus ``-gamma/m`` on ``log pi(y|x)``), as in test_objectives.py.
"""

from types import SimpleNamespace

import pytest
import torch

from llamafactory_minor.objectives import sft_term, with_sft_term

F64 = torch.float64
sig = torch.sigmoid


def inputs(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    pol = (-torch.rand(n, generator=g, dtype=F64) * 30).requires_grad_(True)
    ref = -torch.rand(n, generator=g, dtype=F64) * 30
    m = torch.randint(1, 40, (n,), generator=g).to(F64)
    return pol, ref, m


def grad(losses, x):
    return torch.autograd.grad(losses.sum(), x)[0]


def _trainer(stage):
    """The trainer class of a registry stage (``train.common.trainer_class``)."""
    from llamafactory_minor import registry
    from llamafactory_minor.train.common import trainer_class

    return trainer_class(registry.get(stage, "stage"))


def bare(trainer_cls, beta=0.04, gamma=0.0, **fa):
    """A trainer instance with only what ``compute_objective`` reads (no model, no Trainer.__init__)."""
    trainer = object.__new__(trainer_cls)
    trainer.beta, trainer.ftx_gamma = beta, gamma
    trainer.finetuning_args = SimpleNamespace(**fa)
    return trainer


def test_sft_term_is_lfs_mean_token_nll_and_its_gradient():
    pol, _, m = inputs(1)
    torch.testing.assert_close(sft_term(pol, m), -pol / m)
    for gamma in (0.1, 1.0, 3.0):
        losses, sft = with_sft_term(torch.zeros_like(pol), pol, m, gamma)
        torch.testing.assert_close(grad(losses, pol), -gamma / m, rtol=1e-12, atol=1e-12)
        assert not sft.requires_grad
    same, none = with_sft_term(pol * 2, pol, m, 0.0)
    assert none is None and torch.equal(same, pol * 2)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("beta", [0.04, 0.5])
def test_minorsft_trainer_with_pref_ftx_gradient(beta, gamma):
    MinorSFTTrainer = _trainer("minorsft")

    pol, ref, m = inputs(2)
    losses, metrics = bare(MinorSFTTrainer, beta, gamma).compute_objective(pol, m, ref, {})
    # MinorSFT Eq. 7 plus the SFT term: -((2*sigmoid(-beta*logratio) + gamma) / m) * grad log pi
    expected = -(2 * sig(-beta * (pol - ref)) + gamma) / m
    torch.testing.assert_close(grad(losses, pol), expected.detach(), rtol=1e-6, atol=1e-12)
    assert ("sft_loss" in metrics) == (gamma > 0)
    if gamma:
        assert metrics["sft_loss"] == pytest.approx((-pol / m).mean().item())


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sftdpo_trainer_with_pref_ftx_gradient(gamma):
    SFTDPOTrainer = _trainer("sftdpo")

    beta = 0.1
    pol, ref, m = inputs(3)
    losses, metrics = bare(SFTDPOTrainer, beta, gamma).compute_objective(pol, m, ref, {})
    # MinorSFT paper Eq. 4 plus the SFT term
    expected = -beta * sig(-beta * (pol - ref)) - gamma / m
    torch.testing.assert_close(grad(losses, pol), expected.detach(), rtol=1e-6, atol=1e-12)
    assert ("sft_loss" in metrics) == (gamma > 0)


@pytest.mark.parametrize("gamma", [0.0, 1.5])
def test_poft_trainer_with_pref_ftx_gradient(gamma):
    from llamafactory_minor.objectives import poft_loss

    PoFTTrainer = _trainer("poft")

    pol, _, m = inputs(4)
    g = torch.Generator().manual_seed(5)
    aligned = -torch.rand(len(pol), 3, generator=g, dtype=F64) * 30
    aligned_m = torch.randint(1, 40, (len(pol), 3), generator=g).to(F64)
    batch = {"aligned_logps": aligned, "aligned_num_tokens": aligned_m}
    trainer = bare(PoFTTrainer, 0.1, gamma, poft_beta=1.0, poft_gamma=0.0, poft_aggregation="mean")
    losses, metrics = trainer.compute_objective(pol, m, None, batch)
    # PoFT Eq. 7-8 with tau = sigmoid(r_aligned - r_theta): d/d log pi = -tau / m ; plus the SFT term -gamma/m
    r_theta, r_aligned = pol / m, (aligned / aligned_m).mean(dim=1)
    expected = -sig(r_aligned - r_theta) / m - gamma / m
    torch.testing.assert_close(grad(losses, pol), expected.detach(), rtol=1e-6, atol=1e-12)
    plain, _, _ = poft_loss(pol, m, aligned, aligned_m, beta=1.0, gamma=0.0, aggregation="mean")
    torch.testing.assert_close(losses.detach(), (plain + gamma * (-pol / m)).detach())
    assert ("sft_loss" in metrics) == (gamma > 0)
