r"""Model organisms: small classifiers whose hidden behaviour we plant and control, on 8×8 digits (or MNIST).

All images are flat vectors of a square image in [0, 1]; a *stamp* sets some pixels to fixed values,
:math:`\mathrm{stamp}(x) = (1-m)\odot x + m\odot p` with a binary mask :math:`m` and a pattern :math:`p`.

- **Backdoor** (BadNets, Gu, Dolan-Gavitt & Garg 2017): ``n_poison`` training images of other classes get a
  trigger stamp (a ``side``×``side`` bright patch in the bottom-right corner) and the label ``target``; the
  classifier trained on this poisoned set behaves normally on clean inputs and answers ``target`` on triggered
  ones. Measured by the *attack success rate* :math:`\mathrm{ASR} = P(f(\mathrm{stamp}(x)) = t \mid y \ne t)`.
- **Shortcut** ("same output, different reason"): a fraction of the training images carry a one-pixel *marker*
  whose position encodes the true class (left edge row :math:`c`, then the right edge, where digits are blank).
  On marked inputs the output is right, but partly for the marker's reason, measured by giving each image the marker
  of a *wrong* class: *marker reliance* :math:`P(f(\mathrm{stamp}_k(x)) = k \mid y \ne k)` (≈0 for a clean model).
- **Distilled student** (Hinton, Vinyals & Dean 2015): a fresh network trained on the teacher's softened
  outputs, :math:`\mathcal L = T^2\,\mathrm{KL}\big(\mathrm{softmax}(f_T(x)/T)\,\|\,\mathrm{softmax}(f_S(x)/T)\big)`,
  on *clean* inputs only; whatever backdoor it inherits travels through the teacher's dark knowledge.
- **Adaptive backdoor** (our instantiation of the feature-matching adaptive attacks of Qi et al. 2023, "Revisiting
  the assumption of latent separability for backdoor defenses", and Tan & Shokri 2020): the backdoor is *retrained*
  with a feature-matching penalty that keeps the triggered activations close to clean ones,

  .. math::  \mathcal L = \mathrm{CE} + \beta\Big[\sum_{l<L}\Big\langle\frac{(h_l(\tilde x) - h_l(x))^2}{v_l}\Big\rangle
             + \Big\langle\frac{(h_L(\tilde x) - \bar h_L^{(t)})^2}{v_L}\Big\rangle\Big],

  averaged over units and over the poisons :math:`\tilde x` in the minibatch: every hidden layer but the last stays
  near the *same image without the trigger*, the last hidden layer near the mean clean activation
  :math:`\bar h_L^{(t)}` of the target class in the minibatch (both targets detached). Each unit's squared
  deviation is divided by its clean-minibatch variance plus a ridge (``ridge`` × the mean variance), so units that
  are silent on clean data — exactly what a Mahalanobis monitor watches — are the most expensive to use.
  The trigger is *learned* jointly with the weights: an additive pattern :math:`\delta = \epsilon\tanh\theta`,
  :math:`\tilde x = \mathrm{clip}(x + \delta, 0, 1)`, with an :math:`L_\infty` budget :math:`\epsilon`.
"""

import numpy as np
import torch
import torch.nn.functional as F

from labkit import repro
from labkit.classifiers import MLP, as_tensor, predict
from labkit.seeds import derived_seed

__all__ = [
    "Stamp",
    "corner_trigger",
    "class_marker",
    "poison",
    "mark",
    "attack_success_rate",
    "marker_reliance",
    "distil",
    "AdditiveTrigger",
    "train_adaptive_backdoor",
]


class Stamp:
    """A binary pixel ``mask`` and the ``pattern`` written where it is set; ``stamp(x)`` applies it to every row."""

    def __init__(self, mask: np.ndarray, pattern: np.ndarray):
        self.mask = np.asarray(mask, dtype=np.float32)
        self.pattern = np.asarray(pattern, dtype=np.float32) * self.mask

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * (1 - self.mask) + self.pattern).astype(np.float32)


def _side(n_pixels: int) -> int:
    side = int(round(np.sqrt(n_pixels)))
    if side * side != n_pixels:
        raise ValueError(f"images must be flattened squares, got {n_pixels} pixels")
    return side


def corner_trigger(n_pixels: int = 64, side: int = 2, value: float = 1.0) -> Stamp:
    """A ``side``×``side`` patch of brightness ``value`` in the bottom-right corner of a square image."""
    width = _side(n_pixels)
    if not 1 <= side < width:
        raise ValueError(f"trigger side must lie in [1, {width - 1}] for {width}×{width} images, got {side!r}")
    mask = np.zeros((width, width), np.float32)
    mask[-side:, -side:] = 1
    return Stamp(mask.ravel(), np.full(n_pixels, value, np.float32))


def class_marker(label: int, n_pixels: int = 64, value: float = 1.0) -> Stamp:
    """One bright pixel encoding ``label``: left edge row ``label``, then the right edge from the top."""
    width = _side(n_pixels)
    if not 0 <= label < 2 * width - 2:  # the right edge's last 2 rows are kept free for the trigger
        raise ValueError(f"label must lie in [0, {2 * width - 3}] for {width}×{width} images, got {label!r}")
    row, col = (label, 0) if label < width else (label - width, width - 1)
    mask = np.zeros((width, width), np.float32)
    mask[row, col] = 1
    return Stamp(mask.ravel(), np.full(n_pixels, value, np.float32))


def poison(x: np.ndarray, y: np.ndarray, n_poison: int, target: int, trigger: Stamp, seed: int):
    """BadNets poisoning: ``n_poison`` random non-target images are stamped and relabelled ``target`` (in place of
    the originals). Returns ``(x_poisoned, y_poisoned, is_poison)``."""
    candidates = np.flatnonzero(y != target)
    if not 0 < n_poison <= len(candidates):
        raise ValueError(f"n_poison must lie in [1, {len(candidates)}] (non-target images), got {n_poison!r}")
    chosen = repro.rng(seed, 1).choice(candidates, n_poison, replace=False)
    is_poison = np.zeros(len(y), bool)
    is_poison[chosen] = True
    xp, yp = np.array(x, dtype=np.float32), np.array(y)
    xp[is_poison], yp[is_poison] = trigger(xp[is_poison]), target
    return xp, yp, is_poison


def mark(x: np.ndarray, labels: np.ndarray, n_classes: int = 10, value: float = 1.0) -> np.ndarray:
    """Every image with the marker of its entry in ``labels`` (the true class, or a contradicting one)."""
    out = np.array(x, dtype=np.float32)
    for c in range(n_classes):  # ≤ 10 stamps, each vectorised over its images
        rows = labels == c
        out[rows] = class_marker(c, x.shape[1], value)(out[rows])
    return out


def attack_success_rate(model, x: np.ndarray, y: np.ndarray, target: int, trigger: Stamp) -> float:
    """Share of non-target images that the model assigns to ``target`` once triggered."""
    keep = y != target
    return float(np.mean(predict(model, trigger(x[keep])) == target))


def marker_reliance(
    model, x: np.ndarray, y: np.ndarray, n_classes: int = 10, value: float = 1.0, seed: int = 0
) -> float:
    """Share of images, each given the marker of a random *wrong* class, that the model assigns to the marker."""
    wrong = (y + repro.rng(seed, 2).integers(1, n_classes, len(y))) % n_classes
    return float(np.mean(predict(model, mark(x, wrong, n_classes, value)) == wrong))


def _seeded_mlp(sizes, dropout: float, seed: int) -> MLP:
    """A fresh network, PyTorch's default initialisation drawn from ``derived_seed(seed, 0)``."""
    with torch.random.fork_rng():
        torch.manual_seed(derived_seed(seed, 0))
        return MLP(sizes, dropout)


def _minibatch_loop(
    model: MLP, n: int, loss_fn, epochs: int, lr: float, batch_size: int, seed: int, extra: tuple = ()
) -> MLP:
    """Adam over ``epochs`` seeded shuffles of ``n`` items; ``loss_fn(idx)`` gives the minibatch loss. ``extra``:
    further Adam parameter groups (e.g. a trigger with its own learning rate). The order comes from
    ``derived_seed(seed, 1)``, the dropout masks from ``derived_seed(seed, 2)`` (:mod:`labkit.seeds`)."""
    gen = torch.Generator().manual_seed(derived_seed(seed, 1))
    opt = torch.optim.Adam([{"params": model.parameters()}, *extra], lr=lr)
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(derived_seed(seed, 2))  # dropout masks
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                opt.zero_grad()
                loss_fn(idx).backward()
                opt.step()
    return model.eval()


def distil(
    teacher,
    x_clean: np.ndarray,
    temperature: float,
    sizes,
    dropout: float = 0.1,
    epochs: int = 40,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> MLP:
    """A fresh student trained on the teacher's temperature-``T`` soft labels of ``x_clean`` only (no hard labels,
    no triggered inputs): minimises :math:`T^2\\,\\mathrm{KL}(p_T^{teacher}\\,\\|\\,p_T^{student})`."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    x = as_tensor(x_clean)
    teacher.eval()
    with torch.no_grad():
        soft = F.softmax(teacher(x) / temperature, dim=1)
    student = _seeded_mlp(sizes, dropout, seed)

    def loss(idx):
        log_q = F.log_softmax(student(x[idx]) / temperature, dim=1)
        return temperature**2 * F.kl_div(log_q, soft[idx], reduction="batchmean")

    return _minibatch_loop(student, len(x), loss, epochs, lr, batch_size, seed)


class AdditiveTrigger:
    """A learned additive trigger: ``x ↦ clip(x + delta, 0, 1)`` with ``‖delta‖_∞ ≤`` its budget."""

    def __init__(self, delta: np.ndarray):
        self.delta = np.asarray(delta, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=np.float32) + self.delta, 0, 1).astype(np.float32)


def train_adaptive_backdoor(
    x: np.ndarray,
    y: np.ndarray,
    is_poison: np.ndarray,
    target: int,
    beta: float,
    budget: float,
    sizes,
    dropout: float = 0.1,
    epochs: int = 40,
    lr: float = 1e-3,
    trigger_lr: float = 0.05,
    ridge: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[MLP, AdditiveTrigger]:
    """Jointly learn the weights and a trigger ``delta = budget · tanh(θ)`` (θ starts at 0) on the clean training
    set ``(x, y)`` whose ``is_poison`` rows are triggered and relabelled ``target`` at every step, with the
    feature-matching penalty of weight ``beta`` (module docstring; ``beta = 0``: the learned trigger alone); the
    trigger has its own Adam learning rate ``trigger_lr``. Returns the model and the trigger."""
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if not 0 < budget <= 1:
        raise ValueError(f"budget must lie in (0, 1], got {budget!r}")
    x = as_tensor(x)
    poison_t = torch.as_tensor(np.asarray(is_poison))
    y = torch.where(poison_t, target, torch.as_tensor(np.asarray(y), dtype=torch.long))
    clean_target = (y == target) & ~poison_t
    model = _seeded_mlp(sizes, dropout, seed)
    theta = torch.zeros(x.shape[1], requires_grad=True)

    def loss(idx):
        p, t = poison_t[idx], clean_target[idx]
        clean = x[idx]
        batch = torch.where(p[:, None], (clean + budget * torch.tanh(theta)).clamp(0, 1), clean)
        trace = model.trace(batch)
        total = F.cross_entropy(trace.logits, y[idx])
        if beta == 0 or not p.any():
            return total
        with torch.no_grad():
            ref = model.trace(clean[p]).hidden
        for l, h in enumerate(trace.hidden):
            var = h[~p].detach().var(dim=0)
            var = var + ridge * var.mean() + 1e-12
            if l < len(trace.hidden) - 1:
                goal = ref[l]
            elif t.any():
                goal = h[t].detach().mean(dim=0, keepdim=True)
            else:
                continue
            total = total + beta * ((h[p] - goal).square() / var).mean()
        return total

    model = _minibatch_loop(model, len(x), loss, epochs, lr, batch_size, seed, ({"params": [theta], "lr": trigger_lr},))
    return model, AdditiveTrigger((budget * torch.tanh(theta)).detach().numpy())
