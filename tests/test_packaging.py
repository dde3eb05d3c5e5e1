"""A non-editable install carries what GANatomy reads at run time, and the README stays short.

The wheel is built once per test run (``pip wheel --no-deps --no-build-isolation --no-index``: offline,
with the setuptools requirements-dev.txt installs) from a copy of the repository's files (never in the
checkout itself: setuptools' ``build/`` would keep files from earlier builds), and compared with that
file list: every shipped result, the zoo's generators and model cards, the shipped
segmenter and feature network, every module; nothing of ``tests/``, ``cache/``, ``docs/``, ``scripts/``.
An installed copy (the wheel unpacked, as pip lays it out in site-packages) then finds a shipped
dissection from a folder outside the repository, with an empty cache.
"""
import fcntl
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = "core/weights/results"
# without git (an unpacked archive): what is not source, at the top of the repository
_NOT_SOURCE = {".git", ".venv", "cache", "build", "dist", "logs", ".pytest_cache", ".ruff_cache"}


@functools.lru_cache(maxsize=1)
def _source() -> tuple[str, ...]:
    """The repository's own file list (posix, from the root), as a clean clone plus new files would
    have it: git's tracked and untracked-but-not-ignored files that exist, no bytecode. Without git,
    every file but the folders of ``_NOT_SOURCE``."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.relative_to(ROOT).parts[0] not in _NOT_SOURCE and not p.relative_to(ROOT).parts[0].endswith(
                     ".egg-info")]
    return tuple(sorted(n for n in names if (ROOT / n).is_file() and "__pycache__" not in n.split("/")
                        and not n.endswith(".pyc")))


def _repo_files(folder: str) -> set[str]:
    """The repository's files under ``folder``: not hidden ones (a cache's temporary and quarantined
    entries), not the FID Inception weights a user may put in ``core/weights/`` (core.models.inception
    looks there; never shipped). From the file list, not by importing core."""
    return {n for n in _source() if n.startswith(folder + "/") and not any(p.startswith(".") for p in n.split("/"))
            and not pathlib.PurePosixPath(n).match("pt_inception-*.pth")}


def _build(src: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    for name in _source():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    # a cache entry as the cache lays it out (git ignores them): it must not travel
    entry = src / "cache" / "dissect" / ("0" * 24)
    entry.mkdir(parents=True)
    (entry / "meta.json").write_text("{}")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(out)], check=False, capture_output=True, text=True, env=env,
                          timeout=300)
    assert run.returncode == 0, f"pip wheel failed:\n{run.stdout}\n{run.stderr}"
    (wheel,) = out.glob("ganatomy-*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory, worker_id) -> pathlib.Path:
    """The wheel, built once per run: under pytest-xdist the first worker builds it in the run's
    shared folder (under a lock) and the others reuse it."""
    if worker_id == "master":
        root = tmp_path_factory.mktemp("wheel")
        return _build(root / "src", root / "dist")
    root = tmp_path_factory.getbasetemp().parent / "wheel"     # this run's folder, shared by its workers
    root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = list((root / "dist").glob("ganatomy-*.whl"))
        return built[0] if built else _build(root / "src", root / "dist")


@pytest.fixture(scope="session")
def listing(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if not n.endswith("/")}


def test_the_wheel_carries_every_shipped_result(listing):
    shipped = _repo_files(RESULTS)
    assert f"{RESULTS}/index.json" in shipped and len(shipped) > 100       # the repository ships results
    in_wheel = {n for n in listing if n.startswith(RESULTS + "/")}
    assert not shipped - in_wheel, f"shipped results left out of the wheel: {sorted(shipped - in_wheel)[:10]}"
    extra = sorted(in_wheel - shipped)
    assert not extra, f"files in the wheel's results that the repository has not: {extra[:10]}"


def test_the_wheel_carries_the_zoo_and_every_file_of_the_packages(listing):
    gans = _repo_files("core/weights/gans")
    assert {"core/weights/gans/town.pt", "core/weights/gans/town.json"} <= gans
    assert not gans - listing, f"GAN weights or model cards left out: {sorted(gans - listing)}"
    assert {"core/weights/segmenter_toyworld.pt", "core/weights/features_toyworld.pt"} <= listing
    every = _repo_files("core") | _repo_files("dashboard")      # modules and data files alike
    assert not every - listing, f"files of core/ or dashboard/ left out of the wheel: {sorted(every - listing)[:10]}"


def test_the_wheel_holds_no_tests_cache_or_docs(listing):
    tops = {n.split("/")[0] for n in listing}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"core", "dashboard"}, tops
    assert not [n for n in listing if "__pycache__" in n or n.endswith(".pyc")]


def test_an_installed_wheel_finds_its_shipped_dissection(wheel, tmp_path):
    site = tmp_path / "site-packages"                  # what pip install lays out: the wheel, unpacked
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("import json, core, core.base.cache as c\n"
            "G, seg = core.load_generator('toyworld/town'), core.load_segmenter('toyworld')\n"
            "res = core.dissect(G, seg, ['layer4', 'layer6'], n_samples=500, cached_only=True)\n"
            "print(json.dumps({'core': core.__file__, 'shipped': str(c.shipped_root()),\n"
            "                  'found': res is not None, 'layers': sorted(res.layers) if res else None}))\n")
    env = {k: v for k, v in os.environ.items() if k != "GANATOMY_SHIPPED_RESULTS"}   # conftest turns them off
    env.update(PYTHONPATH=str(site), GANATOMY_CACHE=str(tmp_path / "empty-cache"))
    away = tmp_path / "elsewhere"
    away.mkdir()
    run = subprocess.run([sys.executable, "-c", code], cwd=away, env=env, check=False, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert pathlib.Path(got["core"]).is_relative_to(site), got             # the installed copy, not the checkout
    assert pathlib.Path(got["shipped"]) == site / RESULTS, got
    assert got["found"] and got["layers"] == ["layer4", "layer6"], got
    assert not any((tmp_path / "empty-cache").rglob("arrays.npz"))      # served from the shipped results
    # without $GANATOMY_CACHE an installed copy writes to the user's cache folder, never site-packages
    env.pop("GANATOMY_CACHE")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    run = subprocess.run([sys.executable, "-c", "import core.base.cache as c; print(c.cache_root())"], cwd=away,
                         env=env, check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert pathlib.Path(run.stdout.strip()) == tmp_path / "xdg" / "ganatomy"


def test_the_readme_is_short_and_opens_with_the_quickstart():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 12 * 1024, f"README.md is {len(text.encode())} bytes; keep it under 12 KB"
    first_screen = "\n".join(text.splitlines()[:40])
    assert "streamlit run dashboard/app.py" in first_screen
    assert "core.dissect(" in first_screen and "ganatomy dissect" in first_screen
    # two set-up-and-go commands: the dashboard's and the tests' (the latter is CI's, .ci/run checks it)
    assert text.count("python3 -m venv .venv") == 2
