"""Fixtures shared by the FACADE tests: the small digits classifier as (model, x_train, y_train, unseen images)."""

import pytest


@pytest.fixture(scope="module")
def setup(digits_classifier):
    return digits_classifier
