"""Verified downloads: each online file is pinned to its publisher's hash and checked before anything reads it.

:func:`fetch` is a thin layer over pooch (scientific Python's downloader). Pooch streams the file into a
temporary name in the cache folder, hashes it and moves it into place only when the hash matches the pinned one;
a mismatch deletes the download and raises ``ValueError`` naming the file and the expected and actual hashes. A
cached copy is hashed again on every call and replaced by a fresh, verified download if it no longer matches.
A failed download (network error or hash mismatch) is retried :data:`RETRIES` times.
"""

from pathlib import Path

import pooch
import requests

from labkit.data import DatasetUnavailable

__all__ = ["RETRIES", "fetch"]

#: extra attempts after a failed download (pooch waits 1 s, 2 s, … between them)
RETRIES = 2


def fetch(dataset: str, url: str, known_hash: str | None, dest: Path, alternative: str) -> Path:
    """``dest``, downloaded from ``url`` unless a copy with hash ``known_hash`` (``"sha256:<hex>"`` or
    ``"md5:<hex>"``) is already there. Raises ``ValueError`` without a pinned hash or on a mismatch, and
    :class:`DatasetUnavailable` (naming ``dataset``, ``url`` and the offline ``alternative``) without a network."""
    if not known_hash:
        raise ValueError(
            f"{dataset}: no pinned hash for {dest.name} ({url}); labkit never reads an unverified download. Pin "
            f"it: pass known_hash='sha256:<hex>' (or 'md5:<hex>') as published by the data set's host, or as "
            f"computed (sha256sum) on a copy you have checked."
        )
    store = pooch.Pooch(
        path=dest.parent, base_url="", registry={dest.name: known_hash}, urls={dest.name: url}, retry_if_failed=RETRIES
    )
    try:
        return Path(store.fetch(dest.name, progressbar=True))
    except requests.RequestException as err:  # no route, DNS failure, refused, timeout, HTTP error
        raise DatasetUnavailable(
            f"{dataset}: no verified copy of {dest.name} in {dest.parent}, and it could not "
            f"be downloaded from {url} ({err}). {dataset} needs internet once; "
            f"{alternative}."
        ) from err
