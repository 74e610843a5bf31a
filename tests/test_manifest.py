import json
import os
import subprocess
import sys

import pytest

from labkit import paths
from labkit.atomic import atomic_write_text
from labkit.manifest import Busy, NotPublished, exclusive, load_manifest, publish, recorded_inputs

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


def test_a_file_that_is_not_the_one_committed_makes_its_notebook_stale(tmp_path):
    figures = tmp_path / "figures"
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {"inputs": {"code": "x"}})
    assert recorded_inputs("nb/90.ipynb", figures) == {"code": "x"}
    with pytest.raises(NotPublished, match="no published figures"):
        recorded_inputs("nb/80.ipynb", figures)

    sidecar = (figures / "90_b.json").read_text()
    (figures / "90_b.json").write_text(sidecar.replace('"B"', '"edited"'))
    with pytest.raises(NotPublished, match=r"90_b.json is not the file MANIFEST.json records"):
        recorded_inputs("nb/90.ipynb", figures)
    (figures / "90_b.json").write_text(sidecar)
    (figures / "90_a.png").unlink()
    with pytest.raises(NotPublished, match="90_a.png is missing"):
        recorded_inputs("nb/90.ipynb", figures)


def test_a_manifest_without_hashes_is_stale_not_an_error(tmp_path):
    figures = tmp_path / "figures"
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {"inputs": {}})
    manifest = load_manifest(figures)
    for e in manifest["figures"]:
        del e["sha256"], e["sidecar_sha256"], e["run_id"]
    atomic_write_text(figures / "MANIFEST.json", json.dumps(manifest))
    with pytest.raises(NotPublished, match="predate file hashes"):
        recorded_inputs("nb/90.ipynb", figures)


def test_one_publisher_at_a_time_and_the_lock_dies_with_its_holder(tmp_path):
    (tmp_path / ".90_a.png.x1y2.tmp").write_bytes(b"left by a killed publisher")
    with exclusive(tmp_path):
        assert not list(tmp_path.glob(".*.tmp"))
        with pytest.raises(Busy, match=rf"another pipeline \(pid {os.getpid()}\) is publishing to {tmp_path}"):
            with exclusive(tmp_path):
                pass
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from labkit.manifest import exclusive\n"
                               "with exclusive(Path(sys.argv[1])):\n    print(flush=True); time.sleep(60)",
                               str(tmp_path)], cwd=paths.ROOT, stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    with pytest.raises(Busy, match=rf"\(pid {holder.pid}\)"):
        with exclusive(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with exclusive(tmp_path):  # free again
        pass


def test_index_summarises_claims_once_per_notebook_in_the_notebooks_order(tmp_path):
    figures = tmp_path / "figures"
    record = {**RECORD, "claims": [{"claim": "about a", "passed": True, "figures": ["90_a"], "x": 0.123456789,
                                    "big": 3350.24, "many": list(range(12))},
                                   {"claim": "about all", "passed": False, "figures": [], "known_failure": "why"}]}
    publish("nb/90.ipynb", record, _stage(tmp_path, ["90_a", "90_b"]), figures, {"scale": "smoke"})
    other = {**RECORD, "claims": [{"claim": "new", "passed": False, "figures": []}],
             "figures": [{"name": "80_z", "file": "80_z.png", "caption": "Z", "numbers": {}}]}
    publish("nb/80.ipynb", other, _stage(tmp_path, ["80_z"]), figures, {"scale": "smoke"})
    page = (figures / "index.html").read_text()
    assert "1 passed</span>" in page and "1 failed as documented findings" in page and "1 failed</span>" in page
    assert page.count("<td>about all</td>") == 1                      # once, though both figures carry it
    assert page.index("id='nb-80'") < page.index("id='nb-90'")        # notebooks in their numbered order
    assert "x = 0.1235" in page and "big = 3,350" in page and "many = [0, 1, 2, 3, 4, 5, 6, 7, …]" in page
    assert "claims #1, #2" in page and "claims #2 ·" in page


def test_figures_are_listed_in_the_order_their_notebook_saves_them():
    from labkit.manifest import _figure_order

    files = ["01a_gaussian.png", "01a_grid.png", "01a_ratio.png", "01a_universal.png"]
    order = _figure_order("notebooks/01a_collapse_linear.ipynb", files)
    source = (paths.NOTEBOOKS / "01a_collapse_linear.ipynb").read_text()
    assert order == sorted(files, key=lambda f: source.index(f"\\\"{f[:-4]}\\\""))
    assert _figure_order("notebooks/missing.ipynb", files[::-1]) == files
