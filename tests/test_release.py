"""Release tooling: versions from per-distribution tags, inter-package ranges, built metadata.

The build tests copy the working tree into a scratch git repository, tag it there and build every
distribution with ``.ci/release.py`` (the code CI and the release workflow run): they check the real
``uv-dynamic-versioning`` configuration of each ``pyproject.toml``, not a re-implementation of it.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {"viscy", "viscy-data", "viscy-models", "viscy-transforms", "viscy-utils", "dynaclr"}


def _load_release(root: Path):
    spec = importlib.util.spec_from_file_location(f"release_{abs(hash(root))}", root / ".ci" / "release.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


release = _load_release(ROOT)


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=release-test", "-c", "user.email=release@test", "-c", "tag.gpgSign=false"]
    cmd += ["-c", "commit.gpgSign=false", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def scratch_repo(tmp_path_factory) -> Path:
    """The working tree (tracked and untracked, not ignored files) committed into a new repository."""
    repo = tmp_path_factory.mktemp("repo")
    files = _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a file deleted but not yet staged is still listed
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


@pytest.fixture(scope="module")
def tagged_builds(scratch_repo, tmp_path_factory):
    """Build every wheel (and viscy-data's sdist) after tagging two commits of the scratch repo.

    Commit 1: viscy-v0.2.0, viscy-data-v0.1.0, dynaclr-v1.0.0rc1, and two tags no pattern accepts
    (``viscy-models-0.5.0`` without the ``v``, ``viscy-transforms-v0.3`` with two components).
    Commit 2 (one commit later): viscy-data-v0.1.1 and viscy-utils-v0.1.0.
    """
    for tag in [
        "viscy-v0.2.0",
        "viscy-data-v0.1.0",
        "dynaclr-v1.0.0rc1",
        "viscy-models-0.5.0",
        "viscy-transforms-v0.3",
    ]:
        _git(scratch_repo, "tag", tag)
    _git(scratch_repo, "commit", "-q", "--allow-empty", "-m", "second")
    _git(scratch_repo, "tag", "viscy-data-v0.1.1")
    _git(scratch_repo, "tag", "-a", "viscy-utils-v0.1.0", "-m", "annotated release tag")
    sha = _git(scratch_repo, "rev-parse", "--short=7", "HEAD")
    tool = _load_release(scratch_repo)
    out = tmp_path_factory.mktemp("dist")
    tool.build(out, wheel_only=True)
    sdist_out = tmp_path_factory.mktemp("sdist")
    tool.build(sdist_out, only=["viscy-data"])  # the wheel is built from the unpacked sdist, outside git
    return tool.read_dist(out), tool.read_dist(sdist_out), sha


def test_each_distribution_is_versioned_from_its_own_tag(tagged_builds):
    built, _, sha = tagged_builds
    versions = {name: b.version for name, b in built.items()}
    assert versions == {
        "viscy-data": "0.1.1",  # the later of its two tags, exactly
        "viscy-utils": "0.1.0",  # annotated tags count too
        "viscy": f"0.2.0.post1.dev0+{sha}",  # viscy-data-v*/viscy-utils-v* tags are not the meta-package's
        "dynaclr": f"1.0.0rc1.post1.dev0+{sha}",
        "viscy-models": f"0.0.0.post2.dev0+{sha}",  # "viscy-models-0.5.0" lacks the v: ignored
        "viscy-transforms": f"0.0.0.post2.dev0+{sha}",  # "v0.3" is not X.Y.Z: ignored
    }


def test_wheel_built_from_the_sdist_keeps_the_tag_version(tagged_builds):
    _, from_sdist, _ = tagged_builds
    built = from_sdist["viscy-data"]
    assert built.version == "0.1.1"
    assert built.sdist is not None and release._sdist_version(built.sdist) == "0.1.1"


def test_release_check_accepts_the_tag_and_rejects_a_mismatch(tagged_builds, tmp_path):
    built, _, _ = tagged_builds
    out = Path(next(iter(built.values())).wheel).parent
    tag_problems = release.check(out, tag="viscy-data-v0.1.1", require_sdist=False)
    assert tag_problems == []
    wrong = release.check(out, tag="viscy-data-v0.1.2", require_sdist=False)
    assert any("built as 0.1.1, not 0.1.2" in p for p in wrong)
    assert any("not <distribution>-v<X.Y.Z>" in p for p in release.check(out, tag="viscy-data-0.1.1"))
    # releasing dynaclr needs viscy-models in the series dynaclr requires: untagged viscy-models is refused
    dynaclr = release.check(out, tag="dynaclr-v1.0.0rc1", require_sdist=False)
    assert any("dynaclr requires viscy-models" in p and "0.0.0.post2" in p for p in dynaclr)


def test_every_internal_requirement_is_a_bounded_range():
    """`pip install dynaclr==Y` must not pull a later, incompatible series of a library."""
    reqs = release.internal_requirements(release.members())
    # viscy-utils -> viscy-data, dynaclr -> the four libraries, viscy -> the four libraries
    assert len(reqs) == 9
    for who, req in reqs:
        ops = {s.operator for s in req.specifier}
        assert ops == {">=", "<"}, f"{who}: {req} must be `>=lower,<next-breaking`"
        lower = next(Version(s.version) for s in req.specifier if s.operator == ">=")
        upper = next(Version(s.version) for s in req.specifier if s.operator == "<")
        # 0.x: a minor release may break; from 1.0 a major one
        expected = Version(f"0.{lower.minor + 1}") if lower.major == 0 else Version(f"{lower.major + 1}")
        assert upper == expected, f"{who}: {req} should end at <{expected}"


def test_stamped_versions_satisfy_every_internal_range():
    members = release.members()
    stamped = release.stamp_versions(members)
    assert set(stamped) == DISTRIBUTIONS
    for who, req in release.internal_requirements(members):
        assert req.specifier.contains(stamped[req.name], prereleases=True), (who, str(req))
    assert all(v.endswith("+ci") for v in stamped.values())


def test_disagreeing_ranges_are_refused():
    members = release.members()
    data = next(m for m in members if m.name == "viscy-data")
    bumped = release.Member(
        name="extra-app",
        path=data.path,
        import_name="extra_app",
        dependencies=(Requirement("viscy-data>=0.2,<0.3"),),
        extras={},
        scripts=(),
    )
    with pytest.raises(SystemExit, match="requirements on viscy-data admit no common version"):
        release.stamp_versions([*members, bumped])


def test_tag_pattern_of_every_pyproject():
    """Each distribution's pattern accepts only its own `<dist>-vX.Y.Z[aN|bN|rcN]` tags."""
    import re
    import tomllib

    for member in release.members():
        config = tomllib.loads((member.path / "pyproject.toml").read_text())["tool"]["uv-dynamic-versioning"]
        pattern = re.compile(config["pattern"])
        assert config["fallback-version"] == "0.0.0"
        assert pattern.match(f"{member.name}-v0.1.0")["base"] == "0.1.0"
        assert pattern.match(f"{member.name}-v1.2.3rc4")["stage"] == "rc"
        for other in DISTRIBUTIONS - {member.name}:
            assert not pattern.match(f"{other}-v0.1.0"), (member.name, other)
        for bad in [f"{member.name}-0.1.0", f"{member.name}-v0.1", f"{member.name}-v0.1.0-extra", "v0.1.0"]:
            assert not pattern.match(bad), (member.name, bad)


def test_install_probe_tells_a_missing_extra_from_a_missing_dependency(tmp_path):
    """The probe run in each fresh venv: an ImportError naming the extra is expected, others are errors."""
    import json

    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "__all__ = ['fine', 'needs_extra', 'broken']\n"
        "fine = 1\n"
        "def __getattr__(name):\n"
        "    if name == 'needs_extra':\n"
        "        raise ImportError('tensorstore is required: pip install \"fakepkg[triplet]\"')\n"
        "    if name == 'broken':\n"
        "        import a_module_nobody_declared  # noqa: F401\n"
        "    raise AttributeError(name)\n"
    )
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "plotting.py").write_text("import another_undeclared_module  # noqa: F401\n")
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    result = subprocess.run(
        [sys.executable, "-c", release._PROBE, "fakepkg:names"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] == ["fine", "fakepkg.sub"]
    assert set(report["extra"]) == {"needs_extra"}
    assert set(report["error"]) == {"broken", "fakepkg.sub.plotting"}
