"""The published figures: one JSON sidecar per figure, ``MANIFEST.json`` indexing them, and ``index.html``.

``MANIFEST.json`` is a public interface::

    {"figures": [{"file": "01a_grid.png", "notebook": "notebooks/01a_collapse_linear.ipynb",
                  "sidecar": "01a_grid.json", "caption": "...", "scale": "quick", "run_id": "...",
                  "sha256": "<of the PNG>", "sidecar_sha256": "<of the sidecar>",
                  "claims": [{"claim": "...", "passed": true, ...}]}]}

The manifest is the single source of truth, and replacing it (atomically) is what commits a publish: a notebook's
new PNGs and sidecars are written first, then the manifest that names them with their SHA-256, then the files the
notebook no longer makes are removed. A figure or sidecar whose bytes differ from the hash the manifest records
(a publish killed half-way, a hand edit) makes its notebook stale, as does a manifest written before hashes were
recorded. One publisher at a time: :func:`exclusive` locks a figures folder.
"""

import contextlib
import fcntl
import hashlib
import html
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labkit import paths
from labkit.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["Busy", "NotPublished", "exclusive", "load_manifest", "recorded_inputs", "publish", "sha256", "write_index"]

LOCK = ".pipeline.lock"


class Busy(RuntimeError):
    """Another process holds the figures folder's lock."""


class NotPublished(LookupError):
    """A notebook has no committed figures that match the files on disk; the message says why."""


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sha256(data: bytes | str) -> str:
    """Hex SHA-256 of ``data`` (a str is hashed as its UTF-8 bytes)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@contextlib.contextmanager
def exclusive(figures_dir: Path) -> Iterator[None]:
    """Hold ``figures_dir``'s lock (``flock`` on ``.pipeline.lock``) for the block; raises :class:`Busy` at once,
    naming the holder's pid, when another process holds it. The lock dies with its holder, however it dies; the
    temporary files a killed publisher left behind are removed once the lock is taken."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(figures_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode().strip() or "unknown"
            raise Busy(
                f"another pipeline (pid {holder}) is publishing to {figures_dir}; "
                "wait for it to finish (or stop it), then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for debris in figures_dir.glob(".*.tmp"):
            debris.unlink(missing_ok=True)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def load_manifest(figures_dir: Path) -> dict[str, list[dict[str, Any]]]:
    path = figures_dir / "MANIFEST.json"
    return json.loads(path.read_text()) if path.exists() else {"figures": []}


def recorded_inputs(notebook: str, figures_dir: Path) -> dict[str, Any]:
    """The inputs ``notebook``'s published figures were made from; raises :class:`NotPublished` when it has none,
    or when a figure or sidecar is missing or is not the file the manifest committed."""
    entries = [e for e in load_manifest(figures_dir)["figures"] if e["notebook"] == notebook]
    if not entries:
        raise NotPublished("no published figures")
    for e in entries:
        if "sha256" not in e:
            raise NotPublished("its manifest entries predate file hashes (an old MANIFEST.json)")
        for name, digest in ((e["file"], e["sha256"]), (e["sidecar"], e["sidecar_sha256"])):
            path = figures_dir / name
            if not path.exists():
                raise NotPublished(f"{name} is missing")
            if sha256(path.read_bytes()) != digest:
                raise NotPublished(f"{name} is not the file MANIFEST.json records (an interrupted publish?)")
    return json.loads((figures_dir / entries[0]["sidecar"]).read_text())["inputs"]


def publish(
    notebook: str, record: dict[str, Any], staging: Path, figures_dir: Path, run_info: dict[str, Any]
) -> list[dict[str, Any]]:
    """Publish one successful run's figures into ``figures_dir`` with their sidecars; update manifest and index.

    ``record`` is the run's ``record.json`` (see ``labkit.provenance``); ``run_info`` holds what only the
    pipeline knows (run id, input hash and its components, git commit, wall time, scale). The caller holds the
    folder's lock (:func:`exclusive`). Killed at any point, it leaves the old manifest (its notebook then stale
    if a file changed) or the new one.
    """
    prefix = Path(notebook).stem.split("_")[0] + "_"
    if not record["figures"]:
        raise ValueError(f"{notebook} saved no figure: use labkit.provenance.Recorder.save")
    for fig in record["figures"]:
        if not fig["name"].startswith(prefix):
            raise ValueError(f"{notebook}: figure {fig['name']!r} must start with {prefix!r}")

    manifest = load_manifest(figures_dir)
    old = [e for e in manifest["figures"] if e["notebook"] == notebook]
    entries = []
    for fig in record["figures"]:
        claims = [c for c in record["claims"] if not c["figures"] or fig["name"] in c["figures"]]
        sidecar = _dump(
            {
                "notebook": notebook,
                "figure": fig["file"],
                "caption": fig["caption"],
                "numbers": fig["numbers"],
                "claims": claims,
                "parameters": record["config"],
                "seed": record["config"].get("seed"),
                "execution": record["execution"],
                "package_versions": record["package_versions"],
                **run_info,
            }
        )
        png = (staging / fig["file"]).read_bytes()
        atomic_write_bytes(figures_dir / fig["file"], png)
        atomic_write_text(figures_dir / f"{fig['name']}.json", sidecar)
        entries.append(
            {
                "file": fig["file"],
                "notebook": notebook,
                "sidecar": f"{fig['name']}.json",
                "caption": fig["caption"],
                "scale": run_info.get("scale"),
                "run_id": run_info.get("run_id"),
                "sha256": sha256(png),
                "sidecar_sha256": sha256(sidecar),
                "claims": claims,
            }
        )

    keep = [e for e in manifest["figures"] if e["notebook"] != notebook]
    manifest = {"figures": sorted(keep + entries, key=lambda e: (e["notebook"], e["file"]))}
    atomic_write_text(figures_dir / "MANIFEST.json", _dump(manifest))  # the commit
    current = {e["file"] for e in entries}
    for e in old:
        if e["file"] not in current:
            (figures_dir / e["file"]).unlink(missing_ok=True)
            (figures_dir / e["sidecar"]).unlink(missing_ok=True)
    write_index(figures_dir)
    return entries


def _number(value: Any) -> str:
    """A measured value for reading: floats to four significant digits (thousands whole), lists and dicts item by
    item (at most eight items of a list shown)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_number(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_number(v) for v in value[:8])
        return f"[{shown}{', …' if len(value) > 8 else ''}]"
    return str(value)


def _figure_order(notebook: str, files: list[str]) -> list[str]:
    """``files`` in the order the notebook's code first names them (by name when it cannot be read)."""
    try:
        cells = json.loads((paths.ROOT / notebook).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return sorted(files)
    source = "\n".join("".join(c["source"]) for c in cells if c.get("cell_type") == "code")
    position = {f: source.find(f'"{Path(f).stem}"') for f in files}
    return sorted(files, key=lambda f: (position[f] < 0, position[f], f))


def write_index(figures_dir: Path) -> None:
    """A browsable ``index.html``: a summary of the claims (passed, failed as documented, failed), a table of
    contents by notebook, then per notebook its claims once and its figures in the notebook's order, each figure
    with its caption, scale, provenance and the numbers of the claims about it."""
    esc = html.escape
    entries = load_manifest(figures_dir)["figures"]
    notebooks: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(entries, key=lambda e: e["notebook"]):
        notebooks.setdefault(e["notebook"], []).append(e)
    for notebook, figs in notebooks.items():
        order = _figure_order(notebook, [e["file"] for e in figs])
        figs.sort(key=lambda e: order.index(e["file"]))
    claims = {nb: list({c["claim"]: c for e in figs for c in e["claims"]}.values()) for nb, figs in notebooks.items()}

    def tally(cs: list[dict[str, Any]]) -> tuple[int, int, int]:
        passed = sum(c["passed"] for c in cs)
        known = sum(not c["passed"] and "known_failure" in c for c in cs)
        return passed, known, len(cs) - passed - known

    def anchor(notebook: str) -> str:
        return "nb-" + Path(notebook).stem

    passed, known, failed = tally([c for cs in claims.values() for c in cs])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>labkit figures</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0 1.5em}",
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%;text-align:left;vertical-align:top}",
        ".pass{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}.known{color:#9a6700;font-weight:bold}",
        "</style></head><body><h1>Figures</h1>",
        "<p>Regenerated by <code>make figures</code>; each figure has a JSON sidecar with its provenance.</p>",
        f"<p><b>Claims:</b> <span class='pass'>{passed} passed</span> · <span class='known'>{known} failed as "
        f"documented findings</span> · <span class='fail'>{failed} failed</span> (of {passed + known + failed})"
        "</p><h2>Contents</h2><ul>",
    ]
    for notebook, figs in notebooks.items():
        p, k, f = tally(claims[notebook])
        links = ", ".join(f"<a href='#{esc(e['file'])}'>{esc(Path(e['file']).stem)}</a>" for e in figs)
        parts.append(
            f"<li><a href='#{anchor(notebook)}'>{esc(Path(notebook).stem)}</a> — claims {p} passed"
            f"{f', {k} documented failures' if k else ''}{f', {f} failed' if f else ''}<br>"
            f"<small>{links}</small></li>"
        )
    parts.append("</ul>")
    for notebook, figs in notebooks.items():
        parts.append(f"<h2 id='{anchor(notebook)}'>{esc(Path(notebook).stem)}</h2>")
        number = {c["claim"]: i + 1 for i, c in enumerate(claims[notebook])}
        if claims[notebook]:
            parts.append("<table><tr><th>#</th><th>claim</th><th>result</th><th>measured</th></tr>")
            for c in claims[notebook]:
                measured = ", ".join(
                    f"{k} = {_number(v)}"
                    for k, v in c.items()
                    if k not in ("claim", "passed", "figures", "known_failure")
                )
                if c["passed"]:
                    verdict = "<span class='pass'>passed</span>"
                elif "known_failure" in c:
                    verdict = (
                        f"<span class='known'>failed (documented)</span><br><small>{esc(c['known_failure'])}</small>"
                    )
                else:
                    verdict = "<span class='fail'>FAILED</span>"
                parts.append(
                    f"<tr><td>{number[c['claim']]}</td><td>{esc(c['claim'])}</td><td>{verdict}</td>"
                    f"<td>{esc(measured)}</td></tr>"
                )
            parts.append("</table>")
        for e in figs:
            about = ", ".join(f"#{number[c['claim']]}" for c in e["claims"])
            parts.append(
                f"<h3 id='{esc(e['file'])}'>{esc(e['file'])}</h3><img src='{esc(e['file'])}' alt='{esc(e['caption'])}'>"
            )
            parts.append(
                f"<p>{esc(e['caption'])}<br><small>scale: {esc(str(e.get('scale')))} · "
                f"{f'claims {about} · ' if about else ''}"
                f"provenance: <a href='{esc(e['sidecar'])}'>{esc(e['sidecar'])}</a></small></p>"
            )
    parts.append("</body></html>\n")
    atomic_write_text(figures_dir / "index.html", "\n".join(parts))
