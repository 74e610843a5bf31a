"""The LID maximum-likelihood estimate recovers the dimension of uniform data (labkit.detectors.lid)."""

from labkit import repro
from labkit.detectors.knn import nearest_distances
from labkit.detectors.lid import lid_mle


def test_lid_mle_recovers_the_dimension_of_uniform_data():
    cube = repro.rng(2).uniform(size=(4000, 4))
    estimate = lid_mle(nearest_distances(cube, cube[:500], 20, exclude_self=True)).mean()
    assert 3.3 < estimate < 4.7
