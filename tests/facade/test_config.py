"""FacadeConfig's presets and validation (labkit.facade.config)."""

import pytest

from labkit.config import ConfigError
from labkit.facade.config import FacadeConfig


def test_config_rejects_bad_values():
    assert FacadeConfig.from_params(scale="smoke").n_seeds >= 2
    with pytest.raises(ConfigError, match="lam"):
        FacadeConfig.from_params(lam=2.5)
    with pytest.raises(ConfigError, match="unknown"):
        FacadeConfig.from_params(lambda_=2.0)
