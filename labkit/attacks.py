r"""White-box adversarial examples under an :math:`L_\infty` budget, within the valid pixel range.

- FGSM (Goodfellow, Shlens & Szegedy 2015, "Explaining and harnessing adversarial examples"):
  :math:`x' = \mathrm{clip}_{[lo,hi]}\big(x + \epsilon\,\mathrm{sign}\,\nabla_x \ell(f(x), y)\big)`.
- PGD-:math:`L_\infty` (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"): start at a
  uniform random point of the ε-ball, then ``steps`` times :math:`x' \leftarrow
  \Pi_{B_\infty(x,\epsilon)\cap[lo,hi]}\big(x' + \alpha\,\mathrm{sign}\,\nabla_{x'} \ell(f(x'), y)\big)`, and keep,
  per input, the iterate of largest loss (so PGD is never weaker than its own first steps).

Both run the model in eval mode (no dropout) and return a new tensor with
:math:`\|x'-x\|_\infty \le \epsilon` and :math:`lo \le x' \le hi` exactly.
"""

import torch
import torch.nn.functional as F
from torch import nn

from labkit.classifiers import as_tensor
from labkit.config import ConfigError, non_negative_real, positive_int, validate_params

__all__ = ["fgsm", "pgd"]


def _pixel_range(lo: float, hi: float) -> None:
    if not lo < hi:
        raise ConfigError(f"the pixel range needs lo < hi, got lo={lo!r}, hi={hi!r}")


def _loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input cross-entropy and its gradient with respect to the input."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, lo: float, hi: float) -> torch.Tensor:
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(lo, hi)


@validate_params(eps=non_negative_real)
def fgsm(model: nn.Module, x, y, eps: float, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` on the cross-entropy of labels ``y``, clipped to ``[lo, hi]``."""
    _pixel_range(lo, hi)
    model.eval()
    x, y = as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    _, grad = _loss_and_grad(model, x, y)
    return _project(x + eps * grad.sign(), x, eps, lo, hi).detach()


@validate_params(eps=non_negative_real, steps=positive_int)
def pgd(
    model: nn.Module,
    x,
    y,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    seed: int = 0,
    lo: float = 0.0,
    hi: float = 1.0,
) -> torch.Tensor:
    """Projected signed-gradient ascent with a random start; ``step_size`` defaults to ``2.5·eps/steps`` (Madry et al.).
    Returns, per input, the iterate with the largest loss."""
    _pixel_range(lo, hi)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    model.eval()
    x, y = as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    start = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps
    x_adv = _project(x + start, x, eps, lo, hi)
    best, best_loss = x_adv.clone(), torch.full((len(x),), -torch.inf)
    for _ in range(steps):
        loss, grad = _loss_and_grad(model, x_adv, y)
        better = loss > best_loss
        best[better], best_loss[better] = x_adv[better], loss[better]
        x_adv = _project(x_adv + step_size * grad.sign(), x, eps, lo, hi)
    with torch.no_grad():
        loss = F.cross_entropy(model(x_adv), y, reduction="none")
    better = loss > best_loss
    best[better] = x_adv[better]
    return best.detach()
