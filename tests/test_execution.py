"""Execution settings: read from the environment, checked, carried into kernels, described for the sidecars."""

import pytest

from labkit import execution
from labkit.config import ConfigError
from labkit.execution import VARIABLES, Execution


@pytest.fixture
def clean_env(monkeypatch):
    for variable in VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_defaults_without_variables(clean_env):
    assert execution.current() == Execution(scheduler="", workers=2, threads=2)


def test_variables_set_the_settings_and_round_trip(clean_env):
    settings = Execution(scheduler="tcp://10.0.0.1:8786", workers=3, threads=4)
    for variable, value in settings.environment().items():
        clean_env.setenv(variable, value)
    assert settings.environment() == {
        "LABKIT_SCHEDULER": "tcp://10.0.0.1:8786",
        "LABKIT_WORKERS": "3",
        "LABKIT_THREADS": "4",
    }
    assert execution.current() == settings


@pytest.mark.parametrize(
    "variable, value, allowed",
    [
        ("LABKIT_WORKERS", "many", "an integer >= 1"),
        ("LABKIT_WORKERS", "0", "an integer >= 1"),
        ("LABKIT_THREADS", "-2", "an integer >= 1"),
        ("LABKIT_SCHEDULER", "host:8786", "empty .* or a Dask scheduler address"),
    ],
)
def test_a_bad_variable_is_named_with_what_it_allows(clean_env, variable, value, allowed):
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"bad value for '{variable}'.*allowed: {allowed}"):
        execution.current()


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="'workers'.*allowed: an integer >= 1"):
        Execution(workers=0)
    with pytest.raises(ConfigError, match="unknown parameter 'worker'.*did you mean 'workers'"):
        Execution().replace(worker=3)


def test_describe_records_settings_pools_device_and_cpu(clean_env):
    clean_env.setenv("LABKIT_SCHEDULER", "tcp://127.0.0.1:1")
    described = execution.describe()
    assert {k: described[k] for k in ("scheduler", "workers", "threads")} == {
        "scheduler": "tcp://127.0.0.1:1",
        "workers": 2,
        "threads": 2,
    }
    assert set(described) == {"scheduler", "workers", "threads", "pools", "device", "cpu"}
    assert set(described["cpu"]) == {"machine", "vector_isa"}
