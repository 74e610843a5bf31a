r"""Handwritten-digit images: scikit-learn's bundled real 8×8 digits (offline) and a guarded MNIST loader (online).

- :func:`digits`: the 1,797 real handwritten digits of the UCI "optdigits" set that ship inside scikit-learn
  (Alpaydin & Kaynak 1998). Each 32×32 binary bitmap was cut into 4×4 blocks and the *on* bits of each block
  counted, so a pixel is a count :math:`k \in \{0, …, 16\}`; we return :math:`x = k/16 \in [0, 1]`.
- :func:`stratified_split`: a deterministic train / held-out split that keeps every class's share.
- :func:`mnist`: LeCun et al.'s MNIST (60,000 + 10,000 images of 28×28 grey levels :math:`k/255`) through
  ``torchvision.datasets.MNIST``, downloaded once into a cache folder. What torchvision 0.29 verifies: each
  downloaded ``.gz`` against the MD5 in its own table (``MNIST.resources``), before unpacking it; a mismatching
  file is left on disk but never unpacked, and the next mirror is tried. What it does not: the unpacked IDX
  files it reads on later calls (only their presence is checked). Without a network it raises
  :class:`DatasetUnavailable` naming the data set, the URLs and the offline alternative.
"""

from pathlib import Path

import numpy as np

from labkit import paths, repro
from labkit.data import DatasetUnavailable

__all__ = ["DIGITS_LEVELS", "MNIST_LEVELS", "MNIST_SPLITS", "DatasetUnavailable", "digits", "stratified_split", "mnist"]

#: a digits pixel counts the on bits of a 4×4 block: k ∈ {0, …, 16}, x = k / 16
DIGITS_LEVELS = 16
#: an MNIST pixel is a grey level k ∈ {0, …, 255}, x = k / 255
MNIST_LEVELS = 255

MNIST_SPLITS = ("train", "test")

_OFFLINE_ALTERNATIVE = (
    "offline, use labkit.data.images.digits(): scikit-learn's bundled 1,797 real 8×8 handwritten digits"
)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The real 8×8 digits: images ``(1797, 64)`` float32 in [0, 1] (multiples of 1/16) and labels ``(1797,)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / DIGITS_LEVELS).astype(np.float32), bunch.target.astype(np.int64)


def stratified_split(labels: np.ndarray, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index arrays ``(train, held_out)``: ``round(fraction · n_c)`` random items of every class ``c``
    are held out, so both parts keep the class shares. Same labels and seed, same split."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must lie strictly between 0 and 1, got {held_out_fraction!r}")
    labels = np.asarray(labels)
    g = repro.rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held.append(g.permutation(members)[: round(held_out_fraction * len(members))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def mnist(split: str = "train", cache_dir: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` (``"train"``: 60,000, ``"test"``: 10,000): images ``(n, 784)`` float32 in [0, 1] (multiples
    of 1/255) and labels ``(n,)``. Files are cached in ``cache_dir/MNIST/raw`` (default ``build/data/mnist``)."""
    if split not in MNIST_SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; allowed: {', '.join(MNIST_SPLITS)}")
    from torchvision.datasets import MNIST  # imported here: it costs seconds, and only MNIST needs it

    root = Path(cache_dir) if cache_dir is not None else paths.BUILD / "data" / "mnist"
    try:
        data = MNIST(root, train=split == "train", download=True)
    except RuntimeError as err:  # every mirror failed: no network, or a file failed its MD5
        urls = ", ".join(mirror + name for mirror in MNIST.mirrors for name, _ in MNIST.resources)
        raise DatasetUnavailable(
            f"MNIST: {root / 'MNIST' / 'raw'} lacks the MNIST files and they could not be "
            f"downloaded from {urls} ({err}). MNIST needs internet once; "
            f"{_OFFLINE_ALTERNATIVE}."
        ) from err
    images = data.data.numpy()
    return (images.reshape(len(images), -1) / np.float32(MNIST_LEVELS)).astype(np.float32), data.targets.numpy()
