import hashlib
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
    "figures": [
        {"name": "90_a", "file": "90_a.png", "caption": "A <b>", "numbers": {"x": 1}},
        {"name": "90_b", "file": "90_b.png", "caption": "B", "numbers": {}},
    ],
    "claims": [
        {"claim": "about a", "passed": True, "figures": ["90_a"]},
        {"claim": "about all", "passed": False, "figures": []},
    ],
    "execution": {"scheduler": "", "workers": 2, "threads": 2, "pools": [], "device": None, "cpu": {}},
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


def test_republishing_replaces_the_figures_the_notebook_still_makes(tmp_path):
    figures = tmp_path / "figures"
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {"run_id": "old"})
    staging = _stage(tmp_path, ["90_a", "90_b"])
    (staging / "90_a.png").write_bytes(b"redrawn")
    publish("nb/90.ipynb", RECORD, staging, figures, {"run_id": "new"})
    entries = {e["file"]: e for e in load_manifest(figures)["figures"]}
    assert (figures / "90_a.png").read_bytes() == b"redrawn"
    assert entries["90_a.png"]["sha256"] == hashlib.sha256(b"redrawn").hexdigest()
    assert {e["run_id"] for e in entries.values()} == {"new"}
    assert json.loads((figures / "90_b.json").read_text())["run_id"] == "new"


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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from labkit.manifest import exclusive\n"
            "with exclusive(Path(sys.argv[1])):\n    print(flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=paths.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
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
    record = {
        **RECORD,
        "claims": [
            {
                "claim": "about a",
                "passed": True,
                "figures": ["90_a"],
                "x": 0.123456789,
                "big": 3350.24,
                "many": list(range(12)),
            },
            {"claim": "about all", "passed": False, "figures": [], "known_failure": "why"},
        ],
    }
    publish("nb/90.ipynb", record, _stage(tmp_path, ["90_a", "90_b"]), figures, {"scale": "smoke"})
    other = {
        **RECORD,
        "claims": [{"claim": "new", "passed": False, "figures": []}],
        "figures": [{"name": "80_z", "file": "80_z.png", "caption": "Z", "numbers": {}}],
    }
    publish("nb/80.ipynb", other, _stage(tmp_path, ["80_z"]), figures, {"scale": "smoke"})
    page = (figures / "index.html").read_text()
    assert "1 passed</span>" in page and "1 failed as documented findings" in page and "1 failed</span>" in page
    assert page.count("<td>about all</td>") == 1  # once, though both figures carry it
    assert page.index("id='nb-80'") < page.index("id='nb-90'")  # notebooks in their numbered order
    assert "x = 0.1235" in page and "big = 3,350" in page and "many = [0, 1, 2, 3, 4, 5, 6, 7, …]" in page
    assert "claims #1, #2" in page and "claims #2 ·" in page


def test_figures_are_listed_in_the_order_their_notebook_saves_them():
    from labkit.manifest import _figure_order

    files = ["01a_gaussian.png", "01a_grid.png", "01a_ratio.png", "01a_universal.png"]
    order = _figure_order("notebooks/01a_collapse_linear.ipynb", files)
    source = (paths.NOTEBOOKS / "01a_collapse_linear.ipynb").read_text()
    assert order == sorted(files, key=lambda f: source.index(f'\\"{f[:-4]}\\"'))
    assert _figure_order("notebooks/missing.ipynb", files[::-1]) == files


@pytest.mark.parametrize(
    "figures, match",
    [
        ([], "nb/90_x.ipynb saved no figure: use labkit.provenance.Recorder.save"),
        ([{"name": "80_a", "file": "80_a.png", "caption": "", "numbers": {}}], "figure '80_a' must start with '90_'"),
        (
            [{"name": "900_a", "file": "900_a.png", "caption": "", "numbers": {}}],
            "figure '900_a' must start with '90_'",
        ),
        (
            [RECORD["figures"][0], {"name": "a", "file": "a.png", "caption": "", "numbers": {}}],
            "figure 'a' must start with '90_'",
        ),
    ],
)
def test_publish_refuses_a_record_without_figures_or_with_a_foreign_name_before_writing(tmp_path, figures, match):
    target = tmp_path / "figures"
    staging = _stage(tmp_path, ["90_a", "80_a", "900_a", "a"])
    with pytest.raises(ValueError, match=match):
        publish("nb/90_x.ipynb", {**RECORD, "figures": figures}, staging, target, {})
    assert not target.exists()  # nothing written, not even a manifest


def test_claims_attach_to_the_figures_they_name_and_figure_free_claims_to_all(tmp_path):
    figures = tmp_path / "figures"
    record = {
        **RECORD,
        "claims": [
            {"claim": "on b", "passed": True, "figures": ["90_b"]},
            {"claim": "general", "passed": True, "figures": []},
            {"claim": "on a and b", "passed": False, "figures": ["90_b", "90_a"]},
            {"claim": "on a figure never saved", "passed": True, "figures": ["90_z"]},
        ],
    }
    entries = publish("nb/90.ipynb", record, _stage(tmp_path, ["90_a", "90_b"]), figures, {})
    claims = {e["file"]: [c["claim"] for c in e["claims"]] for e in entries}
    assert claims == {"90_a.png": ["general", "on a and b"], "90_b.png": ["on b", "general", "on a and b"]}
    for e in entries:  # the sidecar carries the same claims, whole
        assert json.loads((figures / e["sidecar"]).read_text())["claims"] == e["claims"]
    assert entries[1]["claims"][0] == record["claims"][0]


def test_sidecar_holds_the_record_provenance_with_run_info_merged_in(tmp_path):
    figures = tmp_path / "figures"
    run_info = {"run_id": "r-17", "inputs": {"code": "abc"}, "git_commit": "deadbeef", "wall_s": 1.5, "scale": "smoke"}
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, run_info)
    sidecar = json.loads((figures / "90_b.json").read_text())
    assert sidecar == {
        "notebook": "nb/90.ipynb",
        "figure": "90_b.png",
        "caption": "B",
        "numbers": {},
        "claims": [RECORD["claims"][1]],
        "parameters": RECORD["config"],
        "seed": 3,
        "execution": RECORD["execution"],
        "package_versions": RECORD["package_versions"],
        **run_info,
    }
    unseeded = {**RECORD, "config": {"scale": "smoke"}}
    publish("nb/90.ipynb", unseeded, _stage(tmp_path, ["90_a", "90_b"]), figures, {})
    assert json.loads((figures / "90_a.json").read_text())["seed"] is None


def test_manifest_hashes_are_those_of_the_written_bytes_and_the_png_is_copied_verbatim(tmp_path):
    figures = tmp_path / "figures"
    staging = _stage(tmp_path, [])
    for name, data in (("90_a", bytes(range(256))), ("90_b", b"\x89PNG second")):
        (staging / f"{name}.png").write_bytes(data)
    entries = publish("nb/90.ipynb", RECORD, staging, figures, {"run_id": "r-1", "scale": "quick"})
    assert load_manifest(figures)["figures"] == entries
    for e in entries:
        png = (figures / e["file"]).read_bytes()
        assert png == (staging / e["file"]).read_bytes()
        assert e["sha256"] == hashlib.sha256(png).hexdigest()
        assert e["sidecar_sha256"] == hashlib.sha256((figures / e["sidecar"]).read_bytes()).hexdigest()
        assert (e["scale"], e["run_id"]) == ("quick", "r-1")
    bare = publish("nb/90.ipynb", RECORD, staging, figures, {})  # run_info without scale or run id
    assert [(e["scale"], e["run_id"]) for e in bare] == [(None, None)] * 2


def test_manifest_stays_sorted_by_notebook_then_file_with_one_entry_per_figure(tmp_path):
    figures = tmp_path / "figures"
    unsorted = [
        {"file": f, "notebook": nb, "sidecar": f[:-4] + ".json", "caption": "", "claims": []}
        for nb, f in (("nb/95.ipynb", "95_b.png"), ("nb/10.ipynb", "10_z.png"), ("nb/95.ipynb", "95_a.png"))
    ]
    atomic_write_text(figures / "MANIFEST.json", json.dumps({"figures": unsorted}))
    reversed_record = {**RECORD, "figures": RECORD["figures"][::-1]}
    for _ in range(2):  # republishing replaces, never duplicates
        publish("nb/90.ipynb", reversed_record, _stage(tmp_path, ["90_a", "90_b"]), figures, {})
    assert [(e["notebook"], e["file"]) for e in load_manifest(figures)["figures"]] == [
        ("nb/10.ipynb", "10_z.png"),
        ("nb/90.ipynb", "90_a.png"),
        ("nb/90.ipynb", "90_b.png"),
        ("nb/95.ipynb", "95_a.png"),
        ("nb/95.ipynb", "95_b.png"),
    ]


def test_a_publish_that_fails_half_way_leaves_the_old_manifest(tmp_path):
    figures = tmp_path / "figures"
    publish("nb/90.ipynb", RECORD, _stage(tmp_path, ["90_a", "90_b"]), figures, {"inputs": {"code": "old"}})
    before = (figures / "MANIFEST.json").read_bytes()
    (tmp_path / "staging" / "90_b.png").unlink()  # the second figure cannot be read
    (tmp_path / "staging" / "90_a.png").write_bytes(b"new a")
    with pytest.raises(FileNotFoundError):
        publish("nb/90.ipynb", RECORD, tmp_path / "staging", figures, {"inputs": {"code": "new"}})
    assert (figures / "MANIFEST.json").read_bytes() == before
    with pytest.raises(NotPublished, match="90_a.png is not the file MANIFEST.json records"):
        recorded_inputs("nb/90.ipynb", figures)  # the half-written notebook reads as stale
