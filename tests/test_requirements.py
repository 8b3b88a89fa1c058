"""requirements.txt is the runtime set, pinned; requirements-test.txt adds the test tools; both match what
the suite runs with."""
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements(name: str) -> tuple[list[str], list[Requirement]]:
    includes, reqs = [], []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            includes.append(line[3:].strip())
        elif line:
            reqs.append(Requirement(line))
    return includes, reqs


def test_runtime_requirements_are_pinned_and_hold_no_test_tools():
    includes, reqs = _requirements("requirements.txt")
    assert includes == []
    names = {r.name.lower() for r in reqs}
    assert {"torch", "torchvision", "torchaudio", "streamlit"} <= names
    assert not names & {"pytest", "playwright"}
    for r in reqs:
        assert len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==", f"{r} is not pinned"


def test_test_requirements_add_the_test_tools_on_top_of_the_runtime_set():
    includes, reqs = _requirements("requirements-test.txt")
    assert includes == ["requirements.txt"]
    assert {r.name.lower() for r in reqs} == {"pytest", "playwright"}
    assert all(next(iter(r.specifier)).operator == "==" for r in reqs)


@pytest.mark.parametrize("req", _requirements("requirements.txt")[1] + _requirements("requirements-test.txt")[1],
                         ids=str)
def test_the_pinned_versions_are_the_ones_installed(req):
    """The pins are the versions this suite runs with (a local build tag such as +cu130 aside)."""
    try:
        installed = Version(version(req.name)).public
    except PackageNotFoundError:
        pytest.fail(f"{req.name} is pinned but not installed")
    assert req.specifier.contains(installed, prereleases=True), f"{req} but {installed} is installed"
