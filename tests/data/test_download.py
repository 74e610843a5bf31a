"""The online loaders (TinyStories, GEOM, MNIST) on small local stand-ins served from 127.0.0.1, never the network:
a file whose pinned hash matches is read and cached; one whose hash differs is refused before it is parsed or
unpickled; no network gives DatasetUnavailable naming the data set, the URL and the offline alternative."""

import gzip
import hashlib
import http.server
import json
import pickle
import re
import socket
import tarfile
import threading

import numpy as np
import pytest
from torchvision.datasets import MNIST

from labkit.data import DatasetUnavailable, download, images, text
from labkit.data import molecules as M

# ---- a local file server ------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.server.failures > 0:
            self.server.failures -= 1
            self.send_error(503)
            return
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """An HTTP server on 127.0.0.1 serving ``server.files`` (name → bytes); it records every request path and
    answers 503 to the first ``server.failures`` requests."""
    for proxy_bypass in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(proxy_bypass, "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.failures = {}, [], 0
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_url():
    """A loopback URL on a port nobody listens on: every request is refused, as without a network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def no_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 0)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- the pinned hashes ---------------------------------------------------------------------------------------------


def test_every_online_file_has_a_well_formed_pinned_hash():
    pinned = [*text.TINYSTORIES_HASHES.values(), M.GEOM_HASH]
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}", h) for h in pinned)
    assert set(text.TINYSTORIES_HASHES) == set(text.TINYSTORIES_URLS)
    assert all(f"/resolve/{text.TINYSTORIES_REVISION}/" in url for url in text.TINYSTORIES_URLS.values())


# ---- the download helper -------------------------------------------------------------------------------------------


def test_fetch_keeps_a_matching_file_and_rehashes_the_cache(server, tmp_path):
    body = b"Once upon a time." * 1000
    server.files["story.txt"] = body
    dest = tmp_path / "cache" / "story.txt"
    path = download.fetch("Stories", server.url + "story.txt", _sha256(body), dest, "offline, read a book")
    assert path == dest and dest.read_bytes() == body and server.requests == ["/story.txt"]
    assert download.fetch("Stories", server.url + "story.txt", _sha256(body), dest, "-") == dest
    assert len(server.requests) == 1  # cached: not downloaded again
    dest.write_bytes(b"bit rot")  # a damaged cache is replaced
    assert download.fetch("Stories", server.url + "story.txt", _sha256(body), dest, "-").read_bytes() == body
    assert len(server.requests) == 2
    assert sorted(p.name for p in dest.parent.iterdir()) == ["story.txt"]  # no temporary files left behind


def test_fetch_refuses_a_wrong_hash_names_file_and_both_hashes_and_keeps_nothing(server, tmp_path, no_retries):
    server.files["story.txt"] = b"tampered"
    dest = tmp_path / "story.txt"
    pinned = _sha256(b"genuine")
    with pytest.raises(ValueError) as err:
        download.fetch("Stories", server.url + "story.txt", pinned, dest, "-")
    message = str(err.value)
    assert "story.txt" in message and pinned in message and hashlib.sha256(b"tampered").hexdigest() in message
    assert not list(tmp_path.iterdir())


def test_fetch_without_a_pinned_hash_refuses_before_downloading(server, tmp_path):
    server.files["story.txt"] = b"anything"
    for unpinned in (None, ""):
        with pytest.raises(ValueError, match="no pinned hash for story.txt.*known_hash="):
            download.fetch("Stories", server.url + "story.txt", unpinned, tmp_path / "story.txt", "-")
    assert server.requests == [] and not list(tmp_path.iterdir())


def test_fetch_retries_a_failed_download(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 1)
    server.files["story.txt"] = b"second time lucky"
    server.failures = 1
    dest = download.fetch("Stories", server.url + "story.txt", _sha256(b"second time lucky"), tmp_path / "s.txt", "-")
    assert dest.read_bytes() == b"second time lucky" and len(server.requests) == 2


def test_fetch_without_network_names_dataset_url_and_alternative(closed_url, tmp_path, no_retries):
    with pytest.raises(DatasetUnavailable) as err:
        download.fetch(
            "Stories", closed_url + "story.txt", _sha256(b"x"), tmp_path / "story.txt", "offline, read a book"
        )
    message = str(err.value)
    assert "Stories" in message and closed_url + "story.txt" in message and "offline, read a book" in message
    assert isinstance(err.value, ConnectionError)


# ---- TinyStories ---------------------------------------------------------------------------------------------------

STORIES = "Once upon a time there was a cat.<|endoftext|>Tom liked to run.\n"


@pytest.fixture
def tinystories_stand_in(server, monkeypatch):
    server.files["TinyStories-valid.txt"] = STORIES.encode()
    monkeypatch.setitem(text.TINYSTORIES_URLS, "validation", server.url + "TinyStories-valid.txt")
    monkeypatch.setitem(text.TINYSTORIES_HASHES, "validation", _sha256(STORIES.encode()))
    return server


def test_tinystories_reads_a_verified_download_and_caches_it(tinystories_stand_in, tmp_path):
    assert text.tinystories("validation", cache_dir=tmp_path) == STORIES
    assert text.tinystories("validation", cache_dir=tmp_path, max_chars=4) == "Once"
    assert tinystories_stand_in.requests == ["/TinyStories-valid.txt"]  # the second call read the cache
    with pytest.raises(ValueError, match="allowed: train, validation"):
        text.tinystories("test", cache_dir=tmp_path)


def test_tinystories_refuses_a_file_whose_hash_is_not_the_pinned_one(
    tinystories_stand_in, tmp_path, no_retries, monkeypatch
):
    pinned = _sha256(b"the genuine file")
    monkeypatch.setitem(text.TINYSTORIES_HASHES, "validation", pinned)
    with pytest.raises(ValueError) as err:
        text.tinystories("validation", cache_dir=tmp_path)
    assert "TinyStories-valid.txt" in str(err.value) and pinned in str(err.value)
    assert hashlib.sha256(STORIES.encode()).hexdigest() in str(err.value) and not list(tmp_path.iterdir())
    # a hash the user has checked for themselves replaces the pinned one
    assert text.tinystories("validation", cache_dir=tmp_path, known_hash=_sha256(STORIES.encode())) == STORIES


def test_tinystories_without_network_names_dataset_url_and_offline_alternative(
    closed_url, tmp_path, no_retries, monkeypatch
):
    monkeypatch.setitem(text.TINYSTORIES_URLS, "train", closed_url + "TinyStories-train.txt")
    with pytest.raises(DatasetUnavailable) as err:
        text.tinystories("train", cache_dir=tmp_path)
    message = str(err.value)
    assert "TinyStories" in message and text.TINYSTORIES_URLS["train"] in message and "shakespeare_text()" in message


# ---- GEOM ----------------------------------------------------------------------------------------------------------


class Unpickled(Exception):
    """Raised by the tripwire pickle: proof that a file was unpickled."""


TRIPPED = []


def _tripwire():
    TRIPPED.append(True)
    raise Unpickled("a stand-in pickle was unpickled")


class _Tripwire:
    def __reduce__(self):
        return _tripwire, ()


def _tar_gz(root, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="rdkit_folder")
    return archive.read_bytes()


def _geom_archive(tmp_path):
    """A two-molecule stand-in for GEOM's rdkit_folder archive (RDKit-embedded conformers, GEOM's layout)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    root = tmp_path / "src" / "rdkit_folder"
    (root / "drugs").mkdir(parents=True)
    summary = {}
    for k, smiles in enumerate(["CCO", "c1ccccc1O"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMultipleConfs(mol, 2, randomSeed=k)
        conformers = [
            {"rd_mol": Chem.Mol(mol, confId=c.GetId()), "boltzmannweight": w}
            for c, w in zip(mol.GetConformers(), (0.3, 0.7))
        ]
        (root / "drugs" / f"{k}.pickle").write_bytes(pickle.dumps({"conformers": conformers}))
        summary[smiles] = {"pickle_path": f"drugs/{k}.pickle"}
    (root / "summary_drugs.json").write_text(json.dumps(summary))
    return _tar_gz(root, tmp_path / "stand_in.tar.gz"), {
        s: pickle.loads((root / e["pickle_path"]).read_bytes()) for s, e in summary.items()
    }


def _tripwire_folder(root):
    """GEOM's layout with one pickle that raises Unpickled when unpickled."""
    (root / "drugs").mkdir(parents=True)
    (root / "drugs" / "0.pickle").write_bytes(pickle.dumps(_Tripwire()))
    (root / "summary_drugs.json").write_text(json.dumps({"CCO": {"pickle_path": "drugs/0.pickle"}}))
    return root


@pytest.fixture
def geom_server(server, monkeypatch):
    monkeypatch.setattr(M, "GEOM_URL", server.url + "datafile/4327252")
    TRIPPED.clear()
    return server


def test_geom_loads_a_verified_stand_in_and_unpacks_it_once(geom_server, tmp_path, monkeypatch):
    archive, pickles = _geom_archive(tmp_path)
    geom_server.files["datafile/4327252"] = archive
    monkeypatch.setattr(M, "GEOM_HASH", "md5:" + hashlib.md5(archive).hexdigest())  # GEOM pins Dataverse's MD5
    data = M.load_geom(2, cache_dir=tmp_path / "cache")
    assert len(data) == 2 and data.coords.shape == (2, 9, 3) and sorted(data.mask.sum(1)) == [3, 7]
    phenol = data[int(np.argmax(data.mask.sum(1)))]
    best = pickles["c1ccccc1O"]["conformers"][1]["rd_mol"]  # Boltzmann weight 0.7
    heavy = [a.GetIdx() for a in best.GetAtoms() if a.GetSymbol() != "H"]
    assert np.allclose(phenol.coords[0, :7], best.GetConformer().GetPositions()[heavy], atol=1e-5)
    assert sorted(phenol.bonds[0][phenol.bonds[0] > 0].tolist()) == [1] * 2 + [4] * 12
    M.load_geom(1, cache_dir=tmp_path / "cache")  # unpacked and stamped: no second download
    assert geom_server.requests == ["/datafile/4327252"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["rdkit_folder", "rdkit_folder.tar.gz"]


def test_geom_refuses_an_archive_with_the_wrong_hash_before_unpickling_anything(
    geom_server, tmp_path, no_retries, monkeypatch
):
    tripwire = _tar_gz(_tripwire_folder(tmp_path / "src" / "rdkit_folder"), tmp_path / "tripwire.tar.gz")
    geom_server.files["datafile/4327252"] = tripwire
    pinned = "md5:" + hashlib.md5(b"the genuine archive").hexdigest()
    monkeypatch.setattr(M, "GEOM_HASH", pinned)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        M.load_geom(1, cache_dir=cache)
    message = str(err.value)
    assert "rdkit_folder.tar.gz" in message and pinned in message and hashlib.md5(tripwire).hexdigest() in message
    assert TRIPPED == [] and not list(cache.iterdir())  # nothing unpickled, unpacked or kept
    # the tripwire is live: the same archive, pinned by the user as trusted, is unpickled and trips
    with pytest.raises(Unpickled):
        M.load_geom(1, cache_dir=cache, known_hash="md5:" + hashlib.md5(tripwire).hexdigest())
    assert TRIPPED == [True]


def test_geom_replaces_an_unpacked_folder_it_did_not_verify(geom_server, tmp_path, monkeypatch):
    """A folder left by an older labkit (which never checked the archive), or unpacked by hand, is not trusted."""
    archive, _ = _geom_archive(tmp_path)
    geom_server.files["datafile/4327252"] = archive
    monkeypatch.setattr(M, "GEOM_HASH", "md5:" + hashlib.md5(archive).hexdigest())
    _tripwire_folder(tmp_path / "cache" / "rdkit_folder")
    assert len(M.load_geom(2, cache_dir=tmp_path / "cache")) == 2 and TRIPPED == []
    assert geom_server.requests == ["/datafile/4327252"]


def test_geom_without_network_names_dataset_url_and_offline_alternative(closed_url, tmp_path, no_retries, monkeypatch):
    monkeypatch.setattr(M, "GEOM_URL", closed_url + "datafile/4327252")
    with pytest.raises(DatasetUnavailable, match="GEOM") as err:
        M.load_geom(5, cache_dir=tmp_path)
    assert M.GEOM_URL in str(err.value) and "load_qm9" in str(err.value)
    with pytest.raises(ValueError, match="allowed: drugs, qm9"):
        M.load_geom(5, subset="zinc", cache_dir=tmp_path)


# ---- MNIST through torchvision -------------------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file (MNIST's format: zero, zero, 0x08, ndim, big-endian uint32 sizes, the bytes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_stand_in(server, monkeypatch):
    """MNIST's four gzipped IDX files (6 training and 5 test images) under /good/, a tampered training-image file
    under /bad/, and torchvision's MD5 table pinned to the good files."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": np.array([5, 0, 4, 1, 9, 2]),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 1, 0, 4]),
    }
    files = {name + ".gz": gzip.compress(_idx(a), mtime=0) for name, a in arrays.items()}
    server.files.update({"good/" + name: body for name, body in files.items()})
    server.files["bad/train-images-idx3-ubyte.gz"] = gzip.compress(_idx(arrays["train-images-idx3-ubyte"] // 2))
    monkeypatch.setattr(MNIST, "resources", [(name, hashlib.md5(body).hexdigest()) for name, body in files.items()])
    monkeypatch.setattr(MNIST, "mirrors", [server.url + "good/"])
    return arrays


def test_mnist_downloads_verifies_and_reads_through_torchvision(server, mnist_stand_in, tmp_path):
    x, y = images.mnist("test", cache_dir=tmp_path)
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, mnist_stand_in["t10k-images-idx3-ubyte"].reshape(5, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, mnist_stand_in["t10k-labels-idx1-ubyte"])
    served = len(server.requests)
    x, y = images.mnist("train", cache_dir=tmp_path)  # already downloaded with the test split
    assert x.shape == (6, 784) and list(y) == [5, 0, 4, 1, 9, 2] and len(server.requests) == served
    with pytest.raises(ValueError, match="allowed: train, test"):
        images.mnist("validation", cache_dir=tmp_path)


def test_mnist_refuses_a_file_that_fails_its_md5_and_tries_the_next_mirror(
    server, mnist_stand_in, tmp_path, monkeypatch
):
    monkeypatch.setattr(MNIST, "mirrors", [server.url + "bad/"])
    with pytest.raises(DatasetUnavailable) as err:
        images.mnist("train", cache_dir=tmp_path / "one")
    assert "corrupted" in str(err.value) and server.url + "bad/train-images-idx3-ubyte.gz" in str(err.value)
    assert not (tmp_path / "one" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # never unpacked

    monkeypatch.setattr(MNIST, "mirrors", [server.url + "bad/", server.url + "good/"])
    x, _ = images.mnist("train", cache_dir=tmp_path / "two")
    np.testing.assert_allclose(x, mnist_stand_in["train-images-idx3-ubyte"].reshape(6, -1) / 255, rtol=1e-6)
    assert "/bad/train-images-idx3-ubyte.gz" in server.requests


def test_mnist_reads_already_unpacked_files_without_checking_them(mnist_stand_in, tmp_path):
    """torchvision 0.29's limit (stated in labkit.data.images): on later calls the unpacked IDX files are only
    checked to exist, so a file changed on disk after a verified download is read as it is."""
    images.mnist("test", cache_dir=tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.array([9, 9, 9, 9, 9])))
    assert list(images.mnist("test", cache_dir=tmp_path)[1]) == [9] * 5


def test_mnist_without_network_names_dataset_urls_and_offline_alternative(closed_url, tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [closed_url])
    with pytest.raises(DatasetUnavailable) as err:
        images.mnist("train", cache_dir=tmp_path)
    message = str(err.value)
    assert "MNIST" in message and closed_url + "train-images-idx3-ubyte.gz" in message
    assert "labkit.data.images.digits()" in message and isinstance(err.value, ConnectionError)
