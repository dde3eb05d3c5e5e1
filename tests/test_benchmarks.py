"""benchmarks/ and scripts/: every file compiles, every benchmark is listed with its command, and
every report goes through the one report helper (core.base.provenance.write_report)."""
from __future__ import annotations

import py_compile
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
FILES = sorted([*BENCHMARKS, *(ROOT / "scripts").rglob("*.py")])
REPORTERS = [*BENCHMARKS, *sorted((ROOT / "scripts").glob("report_*.py"))]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_benchmark_and_script_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_the_readme_lists_every_benchmark_with_its_command():
    text = (ROOT / "benchmarks" / "README.md").read_text()
    assert BENCHMARKS, "no benchmarks found"
    for p in BENCHMARKS:
        line = next((ln for ln in text.splitlines() if re.match(rf"- `{re.escape(p.name)}`", ln)), None)
        assert line, f"benchmarks/README.md has no line for {p.name}"
        assert f"python benchmarks/{p.name}" in line, line
    names = set(re.findall(r"benchmarks/(\w+\.(?:py|sh))", text))
    assert all((ROOT / "benchmarks" / n).is_file() for n in names), names


@pytest.mark.parametrize("path", REPORTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_report_is_written_by_the_one_helper(path):
    text = path.read_text()
    assert "provenance.write_report(" in text
    for ad_hoc in ("os.getloadavg", "platform.platform()", '"command":', "training.hardware()"):
        assert ad_hoc not in text, f"{path.name} stamps its report by hand ({ad_hoc}): provenance.stamp does"


def test_scripts_holds_no_benchmark_and_its_gpu_check_runs_the_moved_one():
    moved = {"bench_dissect.py", "bench_dashboard.py", "bench_long_work.py", "bench_preflight.py", "bench_ace.py",
             "load_dashboard.py", "stress_cache.py", "gpu_check.py"}
    assert not moved & {p.name for p in (ROOT / "scripts").iterdir()}
    assert moved <= {p.name for p in BENCHMARKS}
    wrapper = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert 'exec bash "$(dirname "$0")/../benchmarks/gpu_check.sh" "$@"' in wrapper
