"""The pins: requirements files agree with the lock, and the environment make setup built is the lock's."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


LOCK = pins("requirements.lock")


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-nodeps.txt", "requirements-kenlm.txt"])
def test_every_pin_is_in_the_lock_at_the_same_version(name):
    declared = pins(name)
    assert declared, f"{name} pins nothing"
    assert {package: version for package, version in declared.items() if LOCK.get(package) != version} == {}


def test_the_lock_pins_transitive_dependencies_too():
    direct = pins("requirements.txt") | pins("requirements-nodeps.txt") | pins("requirements-kenlm.txt")
    assert {"absl-py", "protobuf", "ml-dtypes", "opt-einsum"} <= set(LOCK) - set(direct)  # what TensorFlow pulls in
    assert not [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("-e")]


def test_kenlm_is_optional():
    assert "kenlm" not in pins("requirements.txt") and "kenlm" in pins("requirements-kenlm.txt")
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.txt -c requirements.lock" in makefile
    assert "KENLM ?= $(if $(filter true,$(CI)),1,0)" in makefile  # CI installs it


def test_this_environment_is_the_locked_one():
    """make setup installed with the lock as constraints: every locked package here has its version."""
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    optional = {"kenlm"}
    differing = {
        package: (version, installed.get(package))
        for package, version in LOCK.items()
        if installed.get(package) != version and not (package in optional and package not in installed)
    }
    assert differing == {}
