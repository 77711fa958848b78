"""Build, check and smoke-install every distribution of the workspace.

Used by ``.ci/run`` (every CI run) and ``.github/workflows/release.yml`` (on a release tag)::

    python .ci/release.py versions                 # each distribution and its version from git tags
    python .ci/release.py build DIR [--stamp]      # sdist + wheel (built from the sdist) of each into DIR
    python .ci/release.py check DIR [--tag TAG]    # metadata checks of the files in DIR
    python .ci/release.py smoke DIR                # install each wheel alone into a fresh venv and import it
    python .ci/release.py wheels                   # CI: build --stamp + check + smoke in a temporary folder

``--stamp`` gives each distribution a version that every internal requirement on it admits, with a
``+ci`` local label (so nothing on the package index can stand in for it), instead of the version of
its git tags: a clean CI clone may have no tags, and its ``0.0.0.postN`` versions would not satisfy
ranges such as ``viscy-data>=0.1,<0.2``. Versions from real tags are tested by
``tests/test_release.py`` and checked again by ``check --tag`` in the release workflow.

The smoke install is what catches a dependency missing from a distribution's metadata: each wheel is
installed *alone* (its internal dependencies from the wheels just built, everything else pinned to
``uv.lock`` so the uv cache supplies it and no torch is downloaded again), then every public name
(``__all__``) and every public submodule is imported. One that needs an extra must fail with an
``ImportError`` naming the extra (``pip install "viscy-data[triplet]"``); any other failure is an
error. A second venv with every extra installed must import everything.
"""

from __future__ import annotations

import argparse
import email.parser
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
STAMP_LABEL = "ci"
#: ``<distribution>-v<version>``: the tag that releases a distribution (see CONTRIBUTING.md)
TAG_RE = re.compile(r"^(?P<dist>[a-z][a-z0-9-]*?)-v(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)$")


@dataclass(frozen=True)
class Member:
    """One distribution of the workspace, as its ``pyproject.toml`` declares it."""

    name: str
    path: Path
    import_name: str
    dependencies: tuple[Requirement, ...]
    extras: dict[str, tuple[Requirement, ...]]
    scripts: tuple[str, ...]


@dataclass
class Built:
    """The files built for one distribution and what their metadata says."""

    name: str
    version: str
    wheel: Path
    sdist: Path | None
    metadata: email.message.Message
    wheel_files: list[str] = field(default_factory=list)


def _uv() -> list[str]:
    """Return the command that runs uv (``$UV``, which ``uv run`` sets; ``uv`` on PATH; ``python -m uv``)."""
    if os.environ.get("UV") and Path(os.environ["UV"]).is_file():
        return [os.environ["UV"]]
    if shutil.which("uv") and subprocess.run(["uv", "--version"], capture_output=True).returncode == 0:
        return ["uv"]
    return [sys.executable, "-m", "uv"]


def members(root: Path = ROOT) -> list[Member]:
    """Return the root distribution and every workspace member, in build order (libraries first)."""
    root_project = tomllib.loads((root / "pyproject.toml").read_text())
    paths = [root]
    for pattern in root_project["tool"]["uv"]["workspace"]["members"]:
        paths += sorted(Path(p) for p in glob.glob(str(root / pattern)) if (Path(p) / "pyproject.toml").exists())
    found = []
    for path in paths:
        project = tomllib.loads((path / "pyproject.toml").read_text())
        meta = project["project"]
        (package_dir,) = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        found.append(
            Member(
                name=canonicalize_name(meta["name"]),
                path=path,
                import_name=Path(package_dir).name,
                dependencies=tuple(Requirement(r) for r in meta.get("dependencies", [])),
                extras={k: tuple(Requirement(r) for r in v) for k, v in meta.get("optional-dependencies", {}).items()},
                scripts=tuple(meta.get("scripts", {})),
            )
        )
    names = {m.name for m in found}
    # dependencies before dependents, so a build order or an error list reads top-down
    ordered: list[Member] = []
    pending = list(found)
    while pending:
        ready = [
            m
            for m in pending
            if all(r.name not in names or r.name in {o.name for o in ordered} for r in _internal(m, names))
        ]
        if not ready:
            raise RuntimeError(f"circular dependencies between {[m.name for m in pending]}")
        ordered += ready
        pending = [m for m in pending if m not in ready]
    return ordered


def _internal(member: Member, names: set[str]) -> list[Requirement]:
    """Return the requirements of ``member`` (core and extras) on other workspace distributions."""
    reqs = list(member.dependencies) + [r for rs in member.extras.values() for r in rs]
    return [r for r in reqs if canonicalize_name(r.name) in names and canonicalize_name(r.name) != member.name]


def internal_requirements(all_members: list[Member]) -> list[tuple[str, Requirement]]:
    """Return ``(requirer, requirement)`` for every requirement between workspace distributions."""
    names = {m.name for m in all_members}
    return [(m.name, r) for m in all_members for r in _internal(m, names)]


def stamp_versions(all_members: list[Member]) -> dict[str, str]:
    """Choose, for each distribution, a version that every internal requirement on it admits.

    The version is the highest lower bound (``>=``) that any requirement names (``0.0.0`` when none
    does), with the ``+ci`` local label.

    Raises
    ------
    SystemExit
        When the requirements on one distribution admit no common version (say one package asks for
        ``viscy-data>=0.2`` while another still pins ``<0.2``).
    """
    reqs = internal_requirements(all_members)
    stamped = {}
    for member in all_members:
        on_it = [(who, r) for who, r in reqs if canonicalize_name(r.name) == member.name]
        lower = [Version(s.version) for _, r in on_it for s in r.specifier if s.operator in (">=", "==", "~=")]
        base = max(lower, default=Version("0.0.0"))
        version = f"{base.major}.{base.minor}.{base.micro}+{STAMP_LABEL}"
        refused = [f"{who} requires {r}" for who, r in on_it if not r.specifier.contains(version, prereleases=True)]
        if refused:
            raise SystemExit(
                f"the workspace's requirements on {member.name} admit no common version ({version} tried): "
                + "; ".join(refused)
                + ". Make the ranges agree (CONTRIBUTING.md, 'Releases')."
            )
        stamped[member.name] = version
    return stamped


def build(out: Path, *, stamp: bool = False, only: list[str] | None = None, wheel_only: bool = False) -> None:
    """Build the sdist and the wheel (from the sdist, as an installer would) of each distribution.

    Parameters
    ----------
    out : Path
        Output folder.
    stamp : bool
        Version each distribution from :func:`stamp_versions` instead of its git tags.
    only : list of str, optional
        Distribution names to build (default: all).
    wheel_only : bool
        Build wheels straight from the source tree (faster; no sdist).
    """
    all_members = members()
    versions = stamp_versions(all_members) if stamp else {}
    for member in all_members:
        if only is not None and member.name not in only:
            continue
        env = dict(os.environ)
        env.pop("UV_DYNAMIC_VERSIONING_BYPASS", None)
        if stamp:
            env["UV_DYNAMIC_VERSIONING_BYPASS"] = versions[member.name]
        cmd = [*_uv(), "build", "--package", member.name, "--out-dir", str(out), "--quiet"]
        if wheel_only:
            cmd.append("--wheel")
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def read_dist(out: Path) -> dict[str, Built]:
    """Read the metadata of every wheel (and matching sdist) in ``out``, keyed by distribution name."""
    parser = email.parser.Parser()
    found: dict[str, Built] = {}
    for wheel in sorted(out.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            files = zf.namelist()
            (meta_path,) = [f for f in files if f.endswith(".dist-info/METADATA")]
            metadata = parser.parsestr(zf.read(meta_path).decode())
        name = canonicalize_name(metadata["Name"])
        if name in found:
            raise SystemExit(f"{out} holds two wheels of {name}: {found[name].wheel.name} and {wheel.name}")
        sdist = out / f"{metadata['Name'].replace('-', '_')}-{metadata['Version']}.tar.gz"
        found[name] = Built(name, metadata["Version"], wheel, sdist if sdist.exists() else None, metadata, files)
    return found


def _sdist_version(sdist: Path) -> str:
    with tarfile.open(sdist) as tf:
        (pkg_info,) = [m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
        return email.parser.Parser().parsestr(tf.extractfile(pkg_info).read().decode())["Version"]


def check(out: Path, *, tag: str | None = None, require_sdist: bool = True) -> list[str]:
    """Check the metadata of the distributions in ``out``; return the problems found (empty: all good).

    Every workspace distribution must have one wheel (and one sdist of the same version) carrying a
    summary, licence, ``Requires-Python``, project URLs, the README as a markdown long description,
    its import package with ``py.typed`` and its console scripts. Each requirement between
    workspace distributions must admit the version built for the required one (all pairs, or with
    ``tag`` only the pairs that involve the tagged distribution, whose version must equal the tag's).
    """
    all_members = {m.name: m for m in members()}
    built = read_dist(out)
    problems = []
    for name, member in all_members.items():
        b = built.get(name)
        if b is None:
            problems.append(f"{name}: no wheel in {out}")
            continue
        meta = b.metadata
        for key in ("Summary", "License-Expression", "Requires-Python", "Project-URL"):
            if not meta.get(key):
                problems.append(f"{name}: wheel metadata has no {key}")
        if meta.get("Description-Content-Type") != "text/markdown" or len(meta.get_payload() or "") < 200:
            problems.append(f"{name}: wheel metadata lacks the README as a text/markdown long description")
        for required in (f"{member.import_name}/__init__.py", f"{member.import_name}/py.typed"):
            if required not in b.wheel_files:
                problems.append(f"{name}: {b.wheel.name} does not contain {required}")
        entry_points = next((f for f in b.wheel_files if f.endswith(".dist-info/entry_points.txt")), None)
        if member.scripts:
            with zipfile.ZipFile(b.wheel) as zf:
                text = zf.read(entry_points).decode() if entry_points else ""
            for script in member.scripts:
                if not re.search(rf"^{re.escape(script)}\s*=", text, re.MULTILINE):
                    problems.append(f"{name}: {b.wheel.name} has no console script {script!r}")
        if b.sdist is None:
            if require_sdist:
                problems.append(f"{name}: no sdist of version {b.version} in {out}")
        elif (sdist_version := _sdist_version(b.sdist)) != b.version:
            problems.append(f"{name}: sdist version {sdist_version} differs from wheel version {b.version}")

    tagged = None
    if tag is not None:
        match = TAG_RE.match(tag)
        if match is None or canonicalize_name(match["dist"]) not in all_members:
            return [*problems, f"tag {tag!r} is not <distribution>-v<X.Y.Z> for a workspace distribution"]
        tagged = canonicalize_name(match["dist"])
        if tagged in built and built[tagged].version != match["version"]:
            problems.append(
                f"{tagged} built as {built[tagged].version}, not {match['version']} as tag {tag} says "
                "(was the tag pushed on the commit that was built, with full history checked out?)"
            )
    for who, req in internal_requirements(list(all_members.values())):
        dep = canonicalize_name(req.name)
        if tagged is not None and tagged not in (who, dep):
            continue
        if dep in built and not req.specifier.contains(built[dep].version, prereleases=True):
            problems.append(
                f"{who} requires {req}, which does not admit {dep} {built[dep].version} built from this commit: "
                f"update the range (or tag {dep} first)"
            )
    return problems


#: run inside a fresh venv with arguments ``module:names`` or ``module:import``: import each module
#: (and, for ``names``, every name of its ``__all__`` and every public submodule); print one JSON
#: report per module. An ImportError that names an extra (``pip install "pkg[extra]"``) is expected
#: without that extra; any other failure is an error.
_PROBE = r"""
import importlib, json, pkgutil, sys, traceback

def attempt(report, key, load):
    try:
        load()
    except ImportError as err:
        named = "[" in str(err) and "pip install" in str(err)
        (report["extra"] if named else report["error"])[key] = str(err)
    except Exception:
        report["error"][key] = traceback.format_exc(limit=3)
    else:
        report["ok"].append(key)

for arg in sys.argv[1:]:
    module_name, mode = arg.split(":")
    report = {"module": module_name, "ok": [], "extra": {}, "error": {}}
    try:
        module = importlib.import_module(module_name)
    except Exception:
        report["error"]["<import>"] = traceback.format_exc(limit=3)
    else:
        if mode == "names":
            for name in getattr(module, "__all__", []):
                attempt(report, name, lambda: getattr(module, name))
            for info in pkgutil.walk_packages(module.__path__, module_name + ".", onerror=lambda _: None):
                if not any(part.startswith("_") for part in info.name.split(".")):
                    attempt(report, info.name, lambda: importlib.import_module(info.name))
    print(json.dumps(report), flush=True)
"""


def _export_constraints(path: Path) -> None:
    """Write the locked versions of every third-party package (no workspace member) as constraints."""
    cmd = [*_uv(), "export", "--frozen", "--all-packages", "--all-extras", "--all-groups", "--no-emit-workspace"]
    cmd += ["--no-hashes", "--no-header", "--no-annotate", "--quiet", "--output-file", str(path)]
    subprocess.run(cmd, cwd=ROOT, check=True)


def _children_cpu() -> float:
    """CPU seconds used so far by finished child processes (a fair measure on a shared machine)."""
    import resource  # POSIX only, like the workflows that run this

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _fresh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["MPLBACKEND"] = "Agg"
    return env


def smoke(out: Path, *, torch_index: str | None = None, python: str | None = None) -> list[str]:
    """Install each wheel of ``out`` alone (then with every extra) into a fresh venv and import it.

    Parameters
    ----------
    out : Path
        Folder with one wheel per distribution (internal dependencies are taken from it).
    torch_index : str, optional
        Install torch from this index first (e.g. the CPU-only wheel index in the release workflow);
        by default torch comes, like every other dependency, at its locked version from the uv cache.
    python : str, optional
        Interpreter for the venvs (default: this one's version).

    Returns
    -------
    list of str
        Problems found (empty: every wheel installs and imports alone).
    """
    built = read_dist(out)
    all_members = {m.name: m for m in members()}
    problems = []
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    uv = _uv()
    env = _fresh_env()
    with tempfile.TemporaryDirectory(prefix="wheel-smoke-") as tmp:
        tmp_path = Path(tmp)
        constraints = tmp_path / "constraints.txt"
        _export_constraints(constraints)
        # internal packages only from the wheels in ``out``: pin each to its built version
        with constraints.open("a") as f:
            f.writelines(f"{name}=={b.version}\n" for name, b in built.items())
        for name, member in all_members.items():
            if name not in built:
                problems.append(f"{name}: no wheel in {out}")
                continue
            variants = [("alone", "")]
            if member.extras:
                variants.append(("with every extra", f"[{','.join(sorted(member.extras))}]"))
            for label, extras in variants:
                start, cpu_start = time.perf_counter(), _children_cpu()
                venv = tmp_path / f"{name}-{len(extras)}"
                subprocess.run([*uv, "venv", "--quiet", "--python", python, str(venv)], check=True, env=env)
                vpy = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
                install = [*uv, "pip", "install", "--quiet", "--python", vpy, "--constraint", str(constraints)]
                if torch_index:
                    # torch alone from that index (its other dependencies then come from PyPI); the
                    # locked version's local variant (2.x.y+cpu) satisfies the constraint torch==2.x.y
                    subprocess.run([*install, "--no-deps", "--index-url", torch_index, "torch"], check=True, env=env)
                result = subprocess.run(
                    [*install, "--find-links", str(out), f"{built[name].wheel}{extras}"],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    problems.append(f"{name} ({label}): install failed:\n{result.stderr.strip()}")
                    continue
                problems += _probe(vpy, venv, member, label, all_members, built, env, cwd=tmp_path)
                wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
                print(f"  {name} {built[name].version} {label}: {wall:.0f} s ({cpu:.0f} s CPU)", flush=True)
    return problems


def _probe(vpy, venv, member, label, all_members, built, env, cwd) -> list[str]:
    """Import the distribution's package(s) and public names in the venv; run its console scripts."""
    problems = []
    # every public name of the distribution's own package; the packages of the workspace
    # distributions it requires only import (their names are probed with their own wheels)
    modules = [(member.import_name, "names")] + [
        (all_members[canonicalize_name(r.name)].import_name, "import")
        for r in member.dependencies
        if canonicalize_name(r.name) in all_members
    ]
    args = [f"{module}:{what}" for module, what in modules]
    result = subprocess.run([vpy, "-c", _PROBE, *args], capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        return [f"{member.name} ({label}): probing {args} crashed:\n{result.stderr[-2000:]}"]
    for line in result.stdout.strip().splitlines():
        if not line.startswith("{"):
            continue
        report = json.loads(line)
        module = report["module"]
        for name, err in report["error"].items():
            problems.append(f"{member.name} ({label}): {module}.{name} fails without naming an extra:\n{err}")
        if label != "alone":
            for name, err in report["extra"].items():
                problems.append(f"{member.name} ({label}): {module}.{name} still needs an extra: {err}")
        elif report["extra"]:
            print(
                f"    {module}: {len(report['ok'])} names and modules import, {len(report['extra'])} need an extra: "
                f"{', '.join(sorted(report['extra']))}",
                flush=True,
            )
    bindir = Path(vpy).parent
    for script in member.scripts:
        result = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, env=env, cwd=cwd)
        if result.returncode != 0 or "usage" not in result.stdout.lower():
            problems.append(f"{member.name} ({label}): `{script} --help` failed:\n{result.stderr[-2000:]}")
    return problems


def tag_versions(root: Path = ROOT) -> dict[str, str]:
    """Return the version each distribution gets from the git tags of ``root`` (built metadata)."""
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), wheel_only=True)
        return {name: b.version for name, b in read_dist(Path(tmp)).items()}


def _report(problems: list[str], what: str) -> int:
    if problems:
        print(f"{what}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"- {p}", file=sys.stderr)
        return 1
    print(f"{what}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions", help="print each distribution's version from git tags")
    p = sub.add_parser("build", help="build sdists and wheels")
    p.add_argument("out", type=Path)
    p.add_argument("--stamp", action="store_true", help="version from the internal ranges, not from git tags")
    p = sub.add_parser("check", help="check the metadata of built distributions")
    p.add_argument("out", type=Path)
    p.add_argument("--tag", help="the release tag being published, e.g. viscy-data-v0.1.0")
    p = sub.add_parser("smoke", help="install each wheel alone into a fresh venv and import it")
    p.add_argument("out", type=Path)
    p.add_argument("--torch-index", help="index to install torch from first (e.g. the CPU wheel index)")
    sub.add_parser("wheels", help="CI: build --stamp, check and smoke in a temporary folder")
    args = parser.parse_args(argv)

    if args.command == "versions":
        for name, version in tag_versions().items():
            print(f"{name} {version}")
        return 0
    if args.command == "build":
        build(args.out, stamp=args.stamp)
        return 0
    if args.command == "check":
        return _report(check(args.out, tag=args.tag), "metadata check")
    if args.command == "smoke":
        return _report(smoke(args.out, torch_index=args.torch_index), "install-alone check")
    with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
        start, cpu_start = time.perf_counter(), _children_cpu()
        build(Path(tmp), stamp=True)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
        print(f"built {len(list(Path(tmp).glob('*.whl')))} sdists and wheels: {wall:.0f} s ({cpu:.0f} s CPU)")
        status = _report(check(Path(tmp)), "metadata check")
        status |= _report(smoke(Path(tmp)), "install-alone check")
        print(f"wheel checks: {time.perf_counter() - start:.0f} s ({_children_cpu() - cpu_start:.0f} s CPU)")
        return status


if __name__ == "__main__":
    sys.exit(main())
