"""GPPO's per-token loss and its gradient, token by token, against values worked out by hand.

ε_l = 0.2, ε_h = 0.28 (bounds 0.8 and 1.28), dual clip c = 10. With loss = -coef·Â and δ = exp(log_ratio),
d loss / d log_ratio = -Â·f, f the gradient factor:

    token  δ     Â    case                         value (Clip-Higher's)   f
    0      0.5   -1   low-clipped                  0.8                     β1·0.8
    1      0.7   -2   low-clipped                  1.6                     β1·0.8
    2      1.5   +1   high-clipped                 -1.28                   β2·1.28
    3      0.5   +1   inside for Â > 0             -0.5                    0.5
    4      1.5   -1   inside for Â < 0             1.5                     1.5
    5      1.0   +1   on-policy                    -1.0                    1.0
    6      12    -1   dual-clipped (δ > c)         10                      0
"""

import math

import pytest
import torch

from align.rl.gppo import gppo_per_token_loss

RATIOS = [0.5, 0.7, 1.5, 0.5, 1.5, 1.0, 12.0]
ADVANTAGES = [-1.0, -2.0, 1.0, 1.0, -1.0, 1.0, -1.0]
VALUES = [0.8, 1.6, -1.28, -0.5, 1.5, -1.0, 10.0]


def factors(beta1, beta2):
    return [beta1 * 0.8, beta1 * 0.8, beta2 * 1.28, 0.5, 1.5, 1.0, 0.0]


def clip_higher_value(ratio, advantage):
    """DAPO's Clip-Higher loss, -min(δÂ, clip(δ, 0.8, 1.28)Â), then the dual clip's bound for Â < 0."""
    loss = -min(ratio * advantage, min(max(ratio, 0.8), 1.28) * advantage)
    return min(loss, -10.0 * advantage) if advantage < 0 else loss


@pytest.mark.parametrize("beta1,beta2", [(1.0, 1.0), (0.25, 0.5)])
def test_value_and_gradient_factor_per_token(beta1, beta2):
    log_ratio = torch.tensor([[math.log(r) for r in RATIOS]], dtype=torch.float64, requires_grad=True)
    advantages = torch.tensor([ADVANTAGES], dtype=torch.float64)
    terms = gppo_per_token_loss(log_ratio, advantages, 0.2, 0.28, beta1, beta2, dual_clip=10.0)
    terms.per_token_loss.sum().backward()

    assert terms.per_token_loss[0].tolist() == pytest.approx(VALUES)
    assert VALUES == pytest.approx([clip_higher_value(r, a) for r, a in zip(RATIOS, ADVANTAGES)])
    expected_grad = [-a * f for a, f in zip(ADVANTAGES, factors(beta1, beta2))]
    assert log_ratio.grad[0].tolist() == pytest.approx(expected_grad)
    assert terms.low_clipped[0].tolist() == [True, True, False, False, False, False, False]
    assert terms.high_clipped[0].tolist() == [False, False, True, False, False, False, False]
    assert terms.dual_clipped[0].tolist() == [False] * 6 + [True]


def test_without_dual_clip_the_large_ratio_keeps_its_gradient():
    log_ratio = torch.tensor([[math.log(12.0)]], dtype=torch.float64, requires_grad=True)
    terms = gppo_per_token_loss(log_ratio, torch.tensor([[-1.0]], dtype=torch.float64), 0.2, 0.28)
    terms.per_token_loss.sum().backward()
    assert terms.per_token_loss.item() == pytest.approx(12.0)
    assert log_ratio.grad.item() == pytest.approx(12.0)  # -Â·δ
    assert not terms.dual_clipped.any()


def test_zero_variance_and_correct_flags():
    from align.rl.trainer import group_flags

    totals = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, float("nan"), 0.0, 0.0, 0.0])
    zero_variance, correct = group_flags(totals, 4, threshold=1.0)
    assert zero_variance.tolist() == [True] * 4 + [False] * 4 + [True] * 4  # all 1; mixed; NaN + all 0
    assert correct.tolist() == [True] * 4 + [False, True, False, False] + [False] * 4
