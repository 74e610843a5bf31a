import json

from labkit.atomic import atomic_write_text
from labkit.manifest import load_manifest, publish

RECORD = {
    "config": {"scale": "smoke", "seed": 3},
    "figures": [{"name": "90_a", "file": "90_a.png", "caption": "A <b>", "numbers": {"x": 1}},
                {"name": "90_b", "file": "90_b.png", "caption": "B", "numbers": {}}],
    "claims": [{"claim": "about a", "passed": True, "figures": ["90_a"]},
               {"claim": "about all", "passed": False, "figures": []}],
    "threads": {"labkit": 2, "pools": []},
    "package_versions": {"numpy": "x"},
}


def _stage(tmp_path, names):
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    for n in names:
        (staging / f"{n}.png").write_bytes(n.encode())
    return staging


def test_publish_attaches_claims_to_their_figures_and_keeps_other_notebooks(tmp_path):
    figures = tmp_path / "figures"
    other = {"file": "80_x.png", "notebook": "nb/80.ipynb", "sidecar": "80_x.json", "caption": "", "claims": []}
    atomic_write_text(figures / "MANIFEST.json", json.dumps({"figures": [other]}))
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {"scale": "smoke"})
    entries = {e["file"]: e for e in load_manifest(figures)["figures"]}
    assert set(entries) == {"80_x.png", "90_a.png", "90_b.png"}
    assert [c["claim"] for c in entries["90_a.png"]["claims"]] == ["about a", "about all"]
    assert [c["claim"] for c in entries["90_b.png"]["claims"]] == ["about all"]
    sidecar = json.loads((figures / "90_a.json").read_text())
    assert sidecar["seed"] == 3 and sidecar["numbers"] == {"x": 1} and sidecar["scale"] == "smoke"
    assert "A &lt;b&gt;" in (figures / "index.html").read_text()
    assert (figures / "90_a.png").stat().st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_republishing_removes_figures_the_notebook_no_longer_makes(tmp_path):
    figures = tmp_path / "figures"
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {})
    fewer = {**RECORD, "figures": RECORD["figures"][:1]}
    publish("nb/90.ipynb", fewer, _stage(tmp_path, ["90_a"]), figures, {})
    assert [e["file"] for e in load_manifest(figures)["figures"]] == ["90_a.png"]
    assert not (figures / "90_b.png").exists() and not (figures / "90_b.json").exists()
    assert not list(figures.glob(".*.tmp"))
