"""The conda and pip paths pin the same versions, and the lock agrees with both."""

import re

import yaml

from labkit import paths


def _pins(lines):
    return dict(re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", ln).groups() for ln in lines)


def _direct_pins():
    lines = paths.REQUIREMENTS[0].read_text().splitlines()
    return _pins(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))


def test_environment_yml_pins_equal_requirements_txt():
    req = _direct_pins()
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(p for p in pip_section if "==" in p) == req
    assert "python=3.11" in env["dependencies"]


def test_lock_pins_every_direct_dependency_at_the_same_version():
    req = _direct_pins()
    lock = {
        k.lower().replace("_", "-"): v
        for k, v in _pins(ln for ln in paths.REQUIREMENTS[1].read_text().splitlines() if "==" in ln).items()
    }
    for name, version in req.items():
        assert lock.get(name.lower().replace("_", "-")) == version, name
