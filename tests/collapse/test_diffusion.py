"""Conformer diffusion on QM9: the offline QM9 loader, the equivariant denoiser, fit / sample / evaluate, the experiment
in the generation loop, and the notebook config. The online GEOM loader is tested in tests/data/test_download.py."""

import numpy as np
import pytest
import torch

from labkit.collapse import diffusion as D
from labkit.collapse import diffusion_model as DM
from labkit.collapse import plots_diffusion
from labkit.collapse.generations import run_generations
from labkit.config import ConfigError
from labkit.data import molecules as M

TINY = D.Recipe(hidden=8, layers=2, diffusion_steps=6, epochs=1, batch_size=8, eval_levels=3, n_check=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def qm9():
    return M.load_qm9(120, max_heavy_atoms=9, seed=0)


# ------------------------------------------------------------------------------------------------------ data


def test_qm9_shapes_and_determinism(qm9):
    n, A = 120, 9
    assert (qm9.atoms.shape, qm9.mask.shape, qm9.bonds.shape, qm9.coords.shape) == (
        (n, A),
        (n, A),
        (n, A, A),
        (n, A, 3),
    )
    assert np.all(qm9.bonds == qm9.bonds.transpose(0, 2, 1)) and np.all(qm9.mask.sum(1) >= 2)
    assert np.all(qm9.coords[~qm9.mask] == 0) and np.all(qm9.bonds[~qm9.mask] == 0)
    again = M.load_qm9(20, max_heavy_atoms=9, seed=0)
    assert np.array_equal(again.coords, qm9.coords[:20]) and list(again.smiles) == list(qm9.smiles[:20])
    assert list(M.load_qm9(20, max_heavy_atoms=9, seed=1).smiles) != list(qm9.smiles[:20])


def test_qm9_graph_matches_the_coordinates(qm9):
    """Atom order check: every bond of the SMILES graph is a covalent distance, every non-bonded pair is longer."""
    lengths = qm9.bond_lengths()
    assert 1.1 < lengths.min() and lengths.max() < 1.8
    d = np.linalg.norm(qm9.coords[:, :, None] - qm9.coords[:, None], axis=-1)
    pairs = qm9.mask[:, :, None] & qm9.mask[:, None] & (qm9.bonds == 0) & ~np.eye(9, dtype=bool)
    assert d[pairs].min() > 1.9
    mol, i, j = np.nonzero(np.triu(qm9.bonds > 0, 1))
    code = qm9.bonds[mol, i, j]
    pair = np.sort(np.stack([qm9.atoms[mol, i], qm9.atoms[mol, j]], axis=1), axis=1)
    c_o = (pair[:, 0] == 0) & (pair[:, 1] == 2)  # bond orders sit on the right bonds
    assert lengths[c_o & (code == 2)].max() < lengths[c_o & (code == 1)].min()
    assert (code == 3).any() and lengths[code == 3].max() < 1.25


def test_qm9_atom_order_follows_the_smiles_not_the_file():
    """Shuffling the heavy atoms of an xyz row leaves the graph-ordered coordinates unchanged (a molecule without
    graph symmetries, so the atom map is unique)."""
    from rdkit import Chem

    index, smiles, elements, xyz = next(r for r in M.qm9_rows(9) if r[1] == "O=CC1=CN=CN1")
    assert len(Chem.MolFromSmiles(smiles).GetSubstructMatches(Chem.MolFromSmiles(smiles), uniquify=False)) == 1
    symbols, positions = eval(elements), eval(xyz)  # the CSV's Python literals (test data)
    order = [4, 2, 0, 6, 3, 1, 5] + list(range(7, len(symbols)))
    shuffled = M._qm9_molecule(smiles, str([symbols[i] for i in order]), str([positions[i] for i in order]))
    original = M._qm9_molecule(smiles, elements, xyz)
    assert np.allclose(shuffled.GetConformer().GetPositions(), original.GetConformer().GetPositions())
    assert np.allclose(original.GetConformer().GetPositions(), [positions[i] for i in range(7)])  # file order here


def test_conformers_selection_concat_and_errors(qm9):
    one = qm9[3]
    assert len(one) == 1 and one.coords.shape == (1, 9, 3)
    pool = M.concat([qm9, qm9[np.arange(5)]])
    assert len(pool) == 125 and np.array_equal(pool[np.arange(120, 125)].coords, qm9[np.arange(5)].coords)
    moved = qm9.with_coords(qm9.coords + 1.0)
    assert np.all(moved.coords[~qm9.mask] == 0) and np.allclose(moved.bond_lengths(), qm9.bond_lengths())
    small = M.load_qm9(3, max_heavy_atoms=5, seed=0)
    with pytest.raises(ValueError, match="padded to different sizes"):
        M.concat([qm9, small])
    with pytest.raises(ValueError, match="max_heavy_atoms must be an integer in 2..9"):
        M.load_qm9(5, max_heavy_atoms=10)
    with pytest.raises(ValueError, match="n_molecules must lie in 1.."):
        M.load_qm9(10**6)


# ------------------------------------------------------------------------------------------------------ model


def _chain(n_atoms, code=1, max_atoms=9):
    """A carbon chain of ``n_atoms`` heavy atoms with bond code ``code``, atoms 1.5 Å apart along x."""
    bonds = np.zeros((1, max_atoms, max_atoms), np.int8)
    for i in range(n_atoms - 1):
        bonds[0, i, i + 1] = bonds[0, i + 1, i] = code
    mask = np.arange(max_atoms)[None] < n_atoms
    coords = np.zeros((1, max_atoms, 3), np.float32)
    coords[0, :n_atoms, 0] = 1.5 * np.arange(n_atoms)
    return M.Conformers(
        atoms=np.zeros((1, max_atoms), np.int64),
        n_hydrogens=np.zeros((1, max_atoms), np.int64),
        mask=mask,
        bonds=bonds,
        coords=coords,
        smiles=np.array(["C" * n_atoms]),
    )


def test_graph_features_hop_counts():
    """A chain of five atoms: neighbours 1 hop, then 2, 3 and '>= 4'; a single bond code on bonded pairs."""
    edges = DM.graph_features(_chain(5, max_atoms=6))["edges"][0]
    hop_class = edges[..., DM.N_BOND_CODES :].argmax(-1)
    assert [int(hop_class[0, j]) + 1 for j in range(1, 5)] == [1, 2, 3, 4]
    assert edges[0, 1, 1] == 1 and edges[0, 2, 0] == 1 and edges[0, 0].sum() == 0 and edges[:, 5].sum() == 0


def _random_orthogonal(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return torch.tensor(q, dtype=torch.float32)


@pytest.mark.parametrize("reflect", [False, True])
def test_denoiser_is_e3_equivariant_and_ignores_padding(qm9, reflect):
    torch.manual_seed(0)
    model = DM.ConformerDiffusion(hidden=16, layers=3, diffusion_steps=10)
    for layer in model.denoiser.layers:  # leave the near-identity start: a real test
        torch.nn.init.normal_(layer.coord[-1].weight, std=0.3)
    g = DM.graph_features(qm9[np.arange(6)])
    x = DM.centre(torch.randn(6, 9, 3, generator=torch.Generator().manual_seed(1)), g["mask"])
    t = torch.tensor([1, 3, 5, 7, 9, 10])
    eps = model(x, t, g["nodes"], g["edges"], g["mask"])
    q = _random_orthogonal(2) * torch.tensor([1.0, 1.0, -1.0 if reflect else 1.0])
    shift = torch.tensor([3.0, -1.0, 2.0]) * g["mask"][..., None]
    moved = model(x @ q + shift, t, g["nodes"], g["edges"], g["mask"])
    assert eps.abs().max() > 0.05
    assert torch.allclose(moved, eps @ q, atol=1e-5)
    assert torch.all(eps[~g["mask"]] == 0) and torch.allclose(eps.sum(1), torch.zeros(6, 3), atol=1e-5)
    junk = x + 5.0 * (~g["mask"])[..., None]  # padding coordinates must not matter
    assert torch.allclose(
        model(junk * g["mask"][..., None] + junk * ~g["mask"][..., None], t, g["nodes"], g["edges"], g["mask"]),
        eps,
        atol=1e-6,
    )


def test_fit_and_sample_are_deterministic_and_sized(qm9):
    a, b = D.fit(qm9, 3, TINY), D.fit(qm9, 3, TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    like = qm9[np.arange(7)]
    s1, s2 = D.sample(a, like, 5, batch_size=4), D.sample(a, like, 5)
    assert len(s1) == 7 and np.allclose(s1.coords, s2.coords, rtol=1e-4, atol=1e-4)  # batching: not the draws
    assert np.array_equal(s1.bonds, like.bonds) and np.all(s1.coords[~like.mask] == 0)
    assert not np.allclose(D.sample(a, like, 6).coords, s1.coords)


def test_sampler_stays_finite_under_a_wild_denoiser(qm9):
    """The tanh bound on coordinate updates: even a denoiser with huge weights cannot make the sampler overflow
    (a two-atom molecule far from the training data once did, before the bound)."""
    torch.manual_seed(0)
    model = DM.ConformerDiffusion(hidden=8, layers=2, diffusion_steps=50).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=3.0)
    hcn = _chain(2, code=3)
    assert np.isfinite(D.sample(model, M.concat([hcn, qm9[np.arange(4)]]), 0).coords).all()


def test_training_lowers_the_held_out_denoising_loss(qm9):
    train, held = qm9[np.arange(60)], qm9[np.arange(60, 80)]
    short = D.Recipe(hidden=16, layers=2, diffusion_steps=10, epochs=1, batch_size=16, lr=3e-3)  # 4 steps
    long = D.Recipe(hidden=16, layers=2, diffusion_steps=10, epochs=40, batch_size=16, lr=3e-3)  # 150 steps
    before = D.denoising_loss(D.fit(train, 0, short), held, levels=5)
    after = D.denoising_loss(D.fit(train, 0, long), held, levels=5)
    assert after < 0.8 * before


def test_kabsch_rmsd(qm9):
    data = qm9[np.arange(5)]
    q = _random_orthogonal(4).numpy()
    q = q * np.sign(np.linalg.det(q))  # a proper rotation
    moved = (data.coords @ q + np.array([1.0, 2.0, -3.0])) * data.mask[..., None]
    aligned, rmsd = D.kabsch_rmsd(moved, data.coords, data.mask)
    assert np.allclose(rmsd, 0, atol=1e-4) and np.allclose(aligned, data.coords, atol=1e-4)
    mirrored = data.coords * np.array([1.0, 1.0, -1.0])
    _, rmsd = D.kabsch_rmsd(mirrored, data.coords, data.mask)
    planar = np.array([np.linalg.matrix_rank(c[m] - c[m].mean(0), tol=0.1) < 3 for c, m in zip(data.coords, data.mask)])
    assert np.all(rmsd[~planar] > 0.05)  # reflections are not allowed


def test_rdkit_graph_maps_the_arrays_atom_order(qm9):
    for k in range(20):
        mol, order = D.rdkit_graph(qm9, k)
        n = int(qm9.mask[k].sum())
        assert sorted(order) == list(range(n))
        for i, m in enumerate(order):
            atom = mol.GetAtomWithIdx(m)
            assert atom.GetSymbol() == M.ELEMENTS[qm9.atoms[k, i]] and atom.GetTotalNumHs() == qm9.n_hydrogens[k, i]
        for i, j in zip(*np.nonzero(np.triu(qm9.bonds[k, :n, :n] > 0, 1))):
            assert mol.GetBondBetweenAtoms(order[i], order[j]) is not None


def test_etkdg_conformers_follow_the_arrays_atom_order_and_are_deterministic(qm9):
    data = qm9[np.arange(20)]
    coords, ok = D.etkdg_coords(data)
    assert ok.all() and coords.shape == data.coords.shape and np.all(coords[~data.mask] == 0)
    generated = data.with_coords(coords)
    assert np.all(np.abs(generated.bond_lengths() - data.bond_lengths()) < 0.3)  # bonded atoms are bonded
    far = data.with_coords(coords[:, ::-1])  # a wrong atom order would not be
    assert not np.all(np.abs(far.bond_lengths() - data.bond_lengths()) < 0.3)
    rmsd = D.etkdg_rmsd(data)
    np.testing.assert_array_equal(rmsd, D.etkdg_rmsd(data))
    assert np.all((rmsd >= 0) & (rmsd < 2.0))
    _, expected = D.kabsch_rmsd(coords, data.coords.astype(float), data.mask)
    np.testing.assert_allclose(rmsd, expected)
    mmff = D.etkdg_rmsd(data, mmff=True)
    assert np.all(np.isfinite(mmff)) and not np.array_equal(mmff, rmsd)


def test_experiment_in_the_generation_loop():
    exp = D.DiffusionExperiment(n_train=12, n_held_out=6, max_heavy_atoms=9, recipe=TINY, n_preview=2)
    family, train, held = exp.build()
    record = run_generations(family, train, held, "accumulate", 2, seed=0)
    assert [g["train_size"] for g in record["generations"]] == [12, 24]
    assert set(record["generations"][0]["metrics"]) == {"loss", "bond_w1", "rmsd", "rmsd_median"}
    assert record["generations"][1]["preview"].shape == (2, exp.max_heavy_atoms, 3)
    assert not set(train.smiles) & set(held.smiles)


def test_conformer_figure(qm9):
    import matplotlib

    matplotlib.use("Agg")
    fig = plots_diffusion.conformer_figure(qm9[np.arange(2)], {"generation 1": qm9.coords[:2] + 0.1}, "test")
    assert len(fig.axes) == 4


# ------------------------------------------------------------------------------------------------------ config


def test_config_presets_and_validation():
    quick = D.DiffusionCollapseConfig.from_params(scale="quick")
    assert len(quick.seeds) >= 3 and quick.regimes == ("replace", "accumulate", "accumulate_subsample")
    exp = quick.experiment()
    assert exp.recipe == quick.recipe and exp.n_train == quick.n_train
    smoke = D.DiffusionCollapseConfig.from_params(scale="smoke", seeds=[4, 5])
    assert smoke.seeds == (4, 5)
    bad = [
        ({"max_heavy_atoms": 10}, r"an integer in \[2, 9\]"),
        ({"recipe": {"n_check": 10_000}}, "'recipe.n_check'"),
        ({"n_train_": 5}, "did you mean"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError, match=message):
            D.DiffusionCollapseConfig.from_params(scale="quick", **params)
