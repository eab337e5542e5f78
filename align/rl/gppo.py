"""GPPO's per-token loss (Gradient-Preserving clipping Policy Optimization, arXiv 2508.07629): one pure function.

With δ = π_θ/π_old per token, Â the group-normalised advantage and sg the stop-gradient, GPPO is

    loss = -min(δ·Â, clip(δ, (1-ε_l)/sg(δ)·δ, (1+ε_h)/sg(δ)·δ)·Â)

Its value is Clip-Higher's (DAPO's two-sided clip); what changes is the gradient of the clipped tokens.
Per token, d loss / d log π_θ = -Â·f with

    f = β1·(1-ε_l)   when δ < 1-ε_l and Â < 0   (PPO: 0)
    f = β2·(1+ε_h)   when δ > 1+ε_h and Â > 0   (PPO: 0)
    f = δ            otherwise                  (as PPO)

β1 = β2 = 1 is the paper's GPPO; the team later advised β1 0.25-0.5 against entropy collapse. β scales only
the gradient: the value of a clipped token stays Clip-Higher's (CE-GPPO writes β into the value as well, a
constant per token that moves no parameter), so logged losses compare across β.

The dual clip (Ye et al. 2020, in the team's recipe with c = 10) bounds the loss of a negative-advantage
token at c·|Â| once δ > c: value -c·Â, no gradient.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GPPOTerms:
    per_token_loss: torch.Tensor  # [batch, tokens], not yet masked or aggregated
    low_clipped: torch.Tensor  # bool: δ < 1-ε_l and Â < 0 (gradient kept at β1·(1-ε_l))
    high_clipped: torch.Tensor  # bool: δ > 1+ε_h and Â > 0 (gradient kept at β2·(1+ε_h))
    dual_clipped: torch.Tensor  # bool: Â < 0 and δ > c (value c·|Â|, no gradient)


def gppo_per_token_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    beta1: float = 1.0,
    beta2: float = 1.0,
    dual_clip: float | None = None,
) -> GPPOTerms:
    """`log_ratio` = log π_θ - log π_old, `[batch, tokens]`; `advantages` `[batch, 1]` or `[batch, tokens]`."""
    ratio = torch.exp(log_ratio)
    held = ratio.detach()
    low, high = 1.0 - epsilon_low, 1.0 + epsilon_high
    low_clipped = (held < low) & (advantages < 0)
    high_clipped = (held > high) & (advantages > 0)
    # ratio / sg(ratio) is 1 in value and carries d log π_θ as its gradient: bound·(1 + β·(that - 1)) has the
    # clipped value `bound` and the gradient β·bound.
    through = ratio / held - 1.0
    coefficient = torch.where(
        low_clipped, low * (1.0 + beta1 * through), torch.where(high_clipped, high * (1.0 + beta2 * through), ratio)
    )
    per_token_loss = -coefficient * advantages
    if dual_clip is not None:
        dual_clipped = (advantages < 0) & (held > dual_clip)
        per_token_loss = torch.where(dual_clipped, (-dual_clip * advantages).expand_as(per_token_loss), per_token_loss)
    else:
        dual_clipped = torch.zeros_like(low_clipped)
    return GPPOTerms(per_token_loss, low_clipped, high_clipped, dual_clipped)
