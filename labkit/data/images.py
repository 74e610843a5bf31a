r"""Handwritten-digit images: scikit-learn's bundled real 8×8 digits (offline) and a guarded MNIST loader (online).

- :func:`digits`: the 1,797 real handwritten digits of the UCI "optdigits" set that ship inside scikit-learn
  (Alpaydin & Kaynak 1998). Each 32×32 binary bitmap was cut into 4×4 blocks and the *on* bits of each block
  counted, so a pixel is a count :math:`k \in \{0, …, 16\}`; we return :math:`x = k/16 \in [0, 1]`.
- :func:`stratified_split`: a deterministic train / held-out split that keeps every class's share.
- :func:`mnist`: LeCun et al.'s MNIST (60,000 + 10,000 images of 28×28 grey levels :math:`k/255`), downloaded
  once over HTTP(S) from a public mirror into a cache folder and parsed from its gzipped IDX files. Without a
  network it raises :class:`DatasetUnavailable` naming the data set, the URLs and the offline alternative.

IDX format (LeCun's MNIST page): big-endian; bytes 0–1 zero, byte 2 the element type (0x08 = unsigned byte),
byte 3 the number of dimensions ``ndim``; then ``ndim`` uint32 sizes; then the elements in C order.
"""

import gzip
import urllib.request
from pathlib import Path

import numpy as np

from labkit import paths, repro
from labkit.atomic import atomic_write_bytes
from labkit.data import DatasetUnavailable

__all__ = ["DIGITS_LEVELS", "MNIST_LEVELS", "MNIST_MIRRORS", "MNIST_FILES", "DatasetUnavailable",
           "digits", "stratified_split", "read_idx", "mnist"]

#: a digits pixel counts the on bits of a 4×4 block: k ∈ {0, …, 16}, x = k / 16
DIGITS_LEVELS = 16
#: an MNIST pixel is a grey level k ∈ {0, …, 255}, x = k / 255
MNIST_LEVELS = 255

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

_OFFLINE_ALTERNATIVE = ("offline, use labkit.data.images.digits(): scikit-learn's bundled 1,797 real 8×8 "
                        "handwritten digits")


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
        held.append(g.permutation(members)[:round(held_out_fraction * len(members))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def read_idx(data: bytes) -> np.ndarray:
    """An unsigned-byte IDX array (the MNIST file format) from its raw, uncompressed bytes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"not an unsigned-byte IDX file (header {data[:4].hex()!r}; expected 0000 08 <ndim>)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"IDX file holds {len(data) - offset} bytes of data; its header says shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _fetch(url: str, timeout_s: float = 60.0) -> bytes:
    """The bytes at ``url`` (the one place that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


def _cached(name: str, cache_dir: Path) -> Path:
    """``cache_dir/name``, downloaded from the first mirror that serves a gzip file if it is not there yet."""
    path = cache_dir / name
    if path.exists():
        return path
    urls = [mirror + name for mirror in MNIST_MIRRORS]
    errors = []
    for url in urls:
        try:
            data = _fetch(url)
        except OSError as err:                                   # URLError, HTTPError, timeouts, refused connections
            errors.append(f"{url}: {err}")
            continue
        try:
            gzip.decompress(data)
        except (OSError, EOFError) as err:                       # e.g. a proxy's HTML page: never cache it
            errors.append(f"{url}: not a gzip file ({err})")
            continue
        atomic_write_bytes(path, data)
        return path
    raise DatasetUnavailable(f"MNIST: {name} is not in {cache_dir} and could not be downloaded "
                             f"({'; '.join(errors)}). MNIST needs internet once; {_OFFLINE_ALTERNATIVE}.")


def mnist(split: str = "train", cache_dir: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` (``"train"``: 60,000, ``"test"``: 10,000): images ``(n, 784)`` float32 in [0, 1] (multiples
    of 1/255) and labels ``(n,)``. Files are cached in ``cache_dir`` (default ``build/data/mnist``)."""
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; allowed: {', '.join(MNIST_FILES)}")
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.BUILD / "data" / "mnist"
    image_file, label_file = (_cached(name, cache_dir) for name in MNIST_FILES[split])
    images = read_idx(gzip.decompress(image_file.read_bytes()))
    labels = read_idx(gzip.decompress(label_file.read_bytes()))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {split}: images of shape {images.shape} do not match labels of shape {labels.shape}")
    return (images.reshape(len(images), -1) / np.float32(MNIST_LEVELS)).astype(np.float32), labels.astype(np.int64)
