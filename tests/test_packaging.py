"""Installable on a GPU node (issue 23).

- pyproject.toml declares ranges for torch and torchvision, so ``pip install .`` into an
  environment that already holds another (CUDA) build of them keeps that build; below the range
  pip replaces it (the negative control). constraints.txt pins this machine's environment for
  ``make setup``; with it, only a build of the pinned release is kept.
- The conda env of ``snakemake --use-conda`` (workflow/envs/ugpnet.yaml) installs this clone from
  any ``--conda-prefix`` and any ``--directory``.

Nothing here reaches a network. pip resolves with ``--no-index`` against the running environment
(which holds every dependency), fake distributions of torch/torchvision put in front of it on
PYTHONPATH (a ``*.dist-info/METADATA`` is all pip's resolver reads) and fake wheels of the pinned
releases. conda is not installed here and could not fetch Python without a network: a stand-in
``conda`` on PATH answers Snakemake's checks and does, dry, what ``conda env create`` does with
an env file's pip list (conda/env/installers/pip.py: the list written to a requirements file in
the env file's folder, ``pip install -r`` run from that folder), so Snakemake's own env creation
(9.x: snakemake/deployment/conda.py, Env.create) is what is tested.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
PROJECT = "ugpnet-bench"
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^=;\s]+)$")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extras: bool = False) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    if extras:
        reqs += [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in reqs]


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = PIN_LINE.match(line.strip())
            assert m, f"constraints.txt: not a 'name==version' pin: {line!r}"
            pins[_canon(m[1])] = m[2]
    return pins


def _pip_env(**extra) -> dict:
    """pip without this machine's pip.conf (its indexes, find-links, constraints) and cache."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _metadata(name: str, version: str, requires=()) -> str:
    return (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires))


def _installed(site: Path, name: str, version: str, requires=()) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(_metadata(name, version, requires))
    (info / "INSTALLER").write_text("pip\n")


def _wheel(house: Path, name: str, version: str, requires=()) -> None:
    info = f"{name}-{version}.dist-info"
    house.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(house / f"{name}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{info}/METADATA", _metadata(name, version, requires))
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\n"
                   "Root-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")


def _resolve(tmp: Path, torch: str, torchvision: str, constraints: bool = False) -> dict:
    """What ``pip install .`` (or ``pip install -c constraints.txt .``) would install into the
    running environment if it held ``torch``/``torchvision`` of these versions: {name: version}."""
    proj, site, house = tmp / "project", tmp / "site", tmp / "wheels"
    proj.mkdir()
    for name in ("pyproject.toml", "README.md"):  # all that the project's metadata is built from
        shutil.copy(REPO / name, proj / name)
    _installed(site, "torch", torch)
    _installed(site, "torchvision", torchvision, [f"torch=={Version(torch).public}"])
    pins = _pins()
    # the newest releases pip could take instead: the pinned ones
    _wheel(house, "torch", pins["torch"])
    _wheel(house, "torchvision", pins["torchvision"], [f"torch=={pins['torch']}"])
    args = ["--dry-run", "--quiet", "--report", str(tmp / "report.json"), "--no-index",
            "--find-links", str(house), "--no-build-isolation"]
    if constraints:  # make setup's constraints, for the two packages that matter here
        c = tmp / "constraints.txt"
        c.write_text("".join(f"{n}=={pins[n]}\n" for n in ("torch", "torchvision")))
        args += ["-c", str(c)]
    r = subprocess.run([sys.executable, "-m", "pip", "install", *args, str(proj)], cwd=tmp,
                       capture_output=True, text=True, timeout=180,
                       env=_pip_env(PYTHONPATH=str(site)))
    assert r.returncode == 0, f"pip could not resolve:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads((tmp / "report.json").read_text())
    got = {_canon(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    assert PROJECT in got, got  # it did resolve the project
    return got


@pytest.mark.parametrize("torch_build, torchvision_build", [
    ("2.14.1+cu128", "0.29.1+cu128"),  # this machine's release, another CUDA build
    ("2.5.1+cu124", "0.20.1+cu124"),   # the oldest release pyproject.toml admits
])
def test_pip_install_keeps_an_installed_cuda_build_of_torch(tmp_path, torch_build,
                                                            torchvision_build):
    got = _resolve(tmp_path, torch_build, torchvision_build)
    assert "torch" not in got and "torchvision" not in got, (
        f"pip install . would replace torch {torch_build} / torchvision {torchvision_build}: {got}")


def test_pip_install_replaces_a_torch_below_the_declared_range(tmp_path):
    # the negative control: the same resolve does replace a torch the code cannot run on
    pins = _pins()
    got = _resolve(tmp_path, "2.4.1+cu121", "0.19.1+cu121")
    assert (got.get("torch"), got.get("torchvision")) == (pins["torch"], pins["torchvision"]), got


@pytest.mark.parametrize("torch_build, torchvision_build, kept", [
    ("2.14.1+cu128", "0.29.1+cu128", True),   # ==2.14.1 ignores the local label
    ("2.6.0+cu124", "0.21.0+cu124", False),   # hence `make setup CONSTRAINTS=` (Makefile)
])
def test_make_setups_constraints_keep_only_a_build_of_the_pinned_release(
        tmp_path, torch_build, torchvision_build, kept):
    got = _resolve(tmp_path, torch_build, torchvision_build, constraints=True)
    assert ("torch" not in got) is kept, got


def test_constraints_pin_every_requirement_within_pyprojects_ranges():
    pins = _pins()
    assert PROJECT not in pins, "constraints.txt pins the project itself"
    for req in _requirements(extras=True):
        if req.marker is not None and not req.marker.evaluate():
            continue
        pin = pins.get(_canon(req.name))
        assert pin is not None, f"constraints.txt has no pin for {req.name} (make constraints)"
        assert req.specifier.contains(pin, prereleases=True), (
            f"constraints.txt pins {req.name}=={pin}, outside pyproject.toml's {req}")
    for name in ("torch", "torchvision"):  # ranges, so that pip keeps a user's build
        spec = next(r.specifier for r in _requirements() if _canon(r.name) == name)
        assert spec and all(s.operator not in ("==", "===", "~=") for s in spec), (
            f"pyproject.toml pins {name}{spec}; declare a range (constraints.txt pins)")


def test_the_environment_make_setup_built_has_the_pinned_versions():
    """An environment `make setup` installed with constraints.txt (its stamp names the file and
    its sha256) holds exactly the pinned versions: the file cannot drift from the venv it came
    from. Skipped in an environment installed otherwise (e.g. `make setup CONSTRAINTS=` on a
    CUDA node)."""
    stamp = Path(sys.prefix) / ".ugpnet-installed"
    text = stamp.read_text() if stamp.is_file() else ""
    m = re.match(r"constraints: (\S+) ([0-9a-f]{64})$", text.strip())
    if not m or (REPO / m[1]).resolve() != CONSTRAINTS.resolve():
        pytest.skip(f"{sys.prefix} was not installed by `make setup` with constraints.txt "
                    f"(stamp: {text.strip()!r})")
    assert m[2] == hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest(), (
        "constraints.txt changed since this environment was installed: make setup")
    wrong = {}
    for name, pin in _pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != pin:
            wrong[name] = (pin, have)
    assert not wrong, f"pinned vs installed: {wrong} (make setup, or make constraints)"
    assert {"torch", "torchvision"} <= set(_pins())


# --- the conda env -------------------------------------------------------------------------

FAKE_CONDA = '''#!{python}
"""A stand-in for conda (tests/test_packaging.py): answers Snakemake's checks; `env create`
does, dry, conda's pip step (conda/env/installers/pip.py) and leaves pip's report in the env."""
import json, os, subprocess, sys, tempfile
import yaml

a = sys.argv[1:]
with open(os.environ["FAKE_CONDA_LOG"], "a") as log:
    log.write(json.dumps({{"argv": a, "cwd": os.getcwd()}}) + "\\n")
if a[:1] == ["--version"]:
    print("conda 24.11.3")
elif a[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": os.path.dirname(os.path.dirname(sys.argv[0])),
                      "platform": "linux-64"}}))
elif a[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
elif a[:1] == ["clean"]:
    pass
elif a[:2] == ["env", "create"]:
    file, prefix = a[a.index("--file") + 1], a[a.index("--prefix") + 1]
    spec = yaml.safe_load(open(file))
    pip = [p for d in spec["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    os.makedirs(prefix)
    workdir = os.path.dirname(os.path.abspath(file))  # conda: pip_workdir
    with tempfile.NamedTemporaryFile("w", prefix="condaenv.", suffix=".requirements.txt",
                                     dir=workdir, delete=False) as req:
        req.write("\\n".join(pip))
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                            "--no-deps", "--no-index", "--no-build-isolation",
                            "--report", os.path.join(prefix, "pip-report.json"), "-r", req.name],
                           cwd=workdir, env=dict(os.environ, PIP_CONFIG_FILE=os.devnull,
                                                 PIP_NO_CACHE_DIR="1"))
    finally:
        os.remove(req.name)
    sys.exit(r.returncode)
else:
    sys.exit("fake conda: " + " ".join(a))
'''


@pytest.fixture
def fake_conda(tmp_path):
    bindir = tmp_path / "conda" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "conda").write_text(FAKE_CONDA.format(python=sys.executable))
    (bindir / "conda").chmod(0o755)
    log = tmp_path / "conda.log"
    env = {k: v for k, v in os.environ.items() if k != "UGPNET_ROOT"}  # the workflow sets it
    env.update(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", FAKE_CONDA_LOG=str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return env, calls


def _editable_installs(report: Path) -> list:
    return [(i["metadata"]["name"], i["download_info"]["url"],
             i["download_info"].get("dir_info", {}).get("editable"))
            for i in json.loads(report.read_text())["install"]]


@pytest.mark.parametrize("prefix", ["elsewhere", "default"])
def test_the_conda_env_installs_this_clone_from_any_conda_prefix(tmp_path, fake_conda, prefix):
    env, calls = fake_conda
    work = tmp_path / "work"  # --directory: not the clone
    work.mkdir()
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    args = ["-s", str(REPO / "Snakefile"), "--directory", str(work), "--use-conda",
            "--conda-create-envs-only", "--cores", "1", "results/table1.csv"]
    envs = tmp_path / "shared" / "conda-envs"
    if prefix == "elsewhere":
        args += ["--conda-prefix", str(envs)]
    else:  # Snakemake's default: <--directory>/.snakemake/conda
        envs = work / ".snakemake" / "conda"
    r = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-4000:]}"
    created = [c["argv"] for c in calls() if c["argv"][:2] == ["env", "create"]]
    assert len(created) == 1, calls()  # one env for every rule
    file = Path(created[0][created[0].index("--file") + 1])
    env_dir = Path(created[0][created[0].index("--prefix") + 1])
    # Snakemake hands conda a copy of the env file in the prefix: the folder pip runs from
    assert file.parent == envs and file == env_dir.with_suffix(".yaml"), created
    assert "${UGPNET_ROOT}" in file.read_text()
    assert _editable_installs(env_dir / "pip-report.json") == [
        (PROJECT, REPO.as_uri(), True)]


def test_a_relative_pip_path_would_not_find_the_clone_from_another_prefix(tmp_path, fake_conda):
    # the negative control for the test above: the env file as it was (`-e ../..`), placed where
    # Snakemake places it for `--conda-prefix <tmp>/shared/conda-envs`, names <tmp>, not the clone
    env, calls = fake_conda
    envs = tmp_path / "shared" / "conda-envs"
    envs.mkdir(parents=True)
    text = (REPO / "workflow" / "envs" / "ugpnet.yaml").read_text()
    for name, spec in (("old", "-e ../.."), ("new", "-e ${UGPNET_ROOT}")):
        (envs / f"{name}.yaml").write_text(text.replace("-e ${UGPNET_ROOT}", spec))
        r = subprocess.run(["conda", "env", "create", "--file", str(envs / f"{name}.yaml"),
                            "--prefix", str(envs / name)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=dict(env, UGPNET_ROOT=str(REPO)))
        if name == "old":
            assert r.returncode != 0 and f"{tmp_path.as_uri()} " in r.stderr, r.stderr[-2000:]
        else:
            assert r.returncode == 0, r.stderr[-2000:]
            assert _editable_installs(envs / name / "pip-report.json") == [
                (PROJECT, REPO.as_uri(), True)]
