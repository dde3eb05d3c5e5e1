"""Benchmark: how fast, and in how little memory, the checkpoint pre-flight refuses memory bombs.

    python benchmarks/bench_preflight.py                 # writes docs/reports/preflight.json
    python benchmarks/bench_preflight.py --repeats 3 --sizes

Builds, in a temporary folder, the files of issue 18: ProGAN-shaped state dicts of stride-0 views
claiming widths 5000 and 20000 (2 KB files), and a SegFormer folder whose config.json claims huge
hidden sizes (a few KB). Each refusal runs in a fresh Python process (``import core``, then the
load), through the API (``core.load_generator`` / ``core.load_segmenter``) and the CLI
(``python -m core dissect --model PATH``); for each the time of the refusal itself, the process's
wall time and its peak RSS (``os.wait4``'s ``ru_maxrss``, which also covers interpreter teardown),
and inside the process the peak RSS after ``import core`` and after the refusal, are recorded next
to those of a bare ``import core`` in the same run, so what the refusal adds can be told from what
importing costs (``import torch`` alone is most of it).

``--sizes`` also checks the size formulas against the real modules (a meta-device build, no
memory): SegFormer-B0 and -B5 through transformers, ProGAN LSUN, StyleGAN2 1024 px.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]

# the refusal inside a fresh process: JSON on stdout (times in s, peaks in KiB)
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import core
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kind, path = sys.argv[1], sys.argv[2]
err = None
t2 = time.perf_counter()
if kind != "import":
    try:
        (core.load_generator if kind == "generator" else core.load_segmenter)(path)
    except core.GanatomyError as e:
        err = {"type": type(e).__name__, "message": str(e)[:300]}
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "refusal_s": t3 - t2, "rss_after_import_kib": rss_import,
                  "rss_after_refusal_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "error": err}))
"""


def make_files(d: Path) -> dict[str, tuple[str, Path]]:
    one = torch.zeros(1)
    out = {}
    for c in (5000, 20000):
        sd = {"layer1.conv.weight": one.expand(c, c, 4, 4), "layer1.wscale.b": one.expand(c),
              "layer2.conv.weight": one.expand(c, c, 3, 3), "layer2.wscale.b": one.expand(c),
              "output_4x4.conv.weight": one.expand(3, c, 1, 1), "output_4x4.wscale.b": one.expand(3)}
        p = d / f"bomb{c}.pt"
        torch.save(sd, p)
        out[f"memory bomb {c}"] = ("generator", p)
    seg = d / "huge-segformer"
    seg.mkdir()
    labels = {str(i): f"class{i}" for i in range(150)}
    (seg / "config.json").write_text(json.dumps({
        "model_type": "segformer", "architectures": ["SegformerForSemanticSegmentation"],
        "hidden_sizes": [100000, 200000, 500000, 800000], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768,
        "num_attention_heads": [1, 2, 5, 8], "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}))
    torch.save({"segformer.encoder.patch_embeddings.0.proj.weight": torch.zeros(4, 3, 7, 7)},
               seg / "pytorch_model.bin")
    out["huge SegFormer config"] = ("segmenter", seg)
    return out


def run_measured(argv: list[str]) -> dict:
    """Run a child process: its wall time, exit code, peak RSS (``os.wait4``, this child only),
    stdout and stderr."""
    with tempfile.TemporaryFile() as err_file:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err_file,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    return {"wall_s": wall, "rc": proc.returncode, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": out,
            "stderr": err}


def median(xs):
    return round(statistics.median(xs), 3)


def bench(files: dict, repeats: int, out_dir: Path) -> dict:
    py = sys.executable
    rows = {}
    base = [run_measured([py, "-c", CHILD, "import", "-"]) for _ in range(repeats)]
    base_info = [json.loads(b["stdout"]) for b in base]
    rows["import core"] = {"wall_s": median([b["wall_s"] for b in base]),
                           "import_s": median([i["import_s"] for i in base_info]),
                           "peak_rss_mib": median([b["peak_rss_mib"] for b in base])}
    base_rss = rows["import core"]["peak_rss_mib"]
    for name, (kind, path) in files.items():
        api = [run_measured([py, "-c", CHILD, kind, str(path)]) for _ in range(repeats)]
        info = [json.loads(r["stdout"]) for r in api]
        row = {"file": path.name, "file_bytes": sum(f.stat().st_size for f in ([path] if path.is_file()
                                                                                 else path.iterdir())),
               "refused_with": info[0]["error"]["type"] if info[0]["error"] else None,
               "message": info[0]["error"]["message"] if info[0]["error"] else None,
               "refusal_s": median([i["refusal_s"] for i in info]),
               "process_wall_s": median([r["wall_s"] for r in api]),
               "peak_rss_mib": median([r["peak_rss_mib"] for r in api]),
               "rss_after_import_mib": median([i["rss_after_import_kib"] / 1024 for i in info]),
               "rss_after_refusal_mib": median([i["rss_after_refusal_kib"] / 1024 for i in info])}
        row["peak_rss_over_import_mib"] = round(row["peak_rss_mib"] - base_rss, 1)
        if kind == "generator":
            cli = [run_measured([py, "-m", "core", "dissect", "--model", str(path), "--out", str(out_dir)])
                   for _ in range(repeats)]
            lines = cli[0]["stderr"].strip().splitlines()
            row["cli"] = {"rc": cli[0]["rc"], "stderr_lines": len(lines), "stderr": lines[-1][:200] if lines else "",
                          "process_wall_s": median([r["wall_s"] for r in cli]),
                          "peak_rss_mib": median([r["peak_rss_mib"] for r in cli])}
            row["cli"]["wall_over_import_s"] = round(row["cli"]["process_wall_s"] - rows["import core"]["wall_s"], 3)
            row["cli"]["peak_rss_over_import_mib"] = round(row["cli"]["peak_rss_mib"] - base_rss, 1)
        rows[name] = row
        print(f"{name:24s} {row['refused_with']}: refusal {row['refusal_s'] * 1000:.1f} ms, process "
              f"{row['process_wall_s']:.2f} s, peak RSS {row['peak_rss_mib']:.0f} MiB "
              f"({row['peak_rss_over_import_mib']:+.1f} over import core)", flush=True)
    return rows


SIZES = r"""
import json, torch
import transformers as tf
from core.models import progan, segformer, stylegan2
from core.models.progan import ProGAN
def count(m):
    return sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
out = {}
for name, cfg in {"segformer-b0": {}, "segformer-b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3],
                  "decoder_hidden_size": 768, "num_labels": 150}}.items():
    with torch.device("meta"):
        m = tf.SegformerForSemanticSegmentation(tf.SegformerConfig.from_dict(cfg))
    s = segformer.model_size(cfg)
    out[name] = {"real": count(m), "formula": s["params"] + s["buffers"]}
ch = (512, 512, 512, 512, 256, 128, 64)
with torch.device("meta"):
    out["progan-lsun-256"] = {"real": count(ProGAN(512, ch)), "formula": progan.model_size(512, ch)["params"]}
    c = stylegan2.rosinality_channels(1024, 2)
    s = stylegan2.model_size(1024, 512, 8, c)
    out["stylegan2-1024"] = {"real": count(stylegan2.StyleGAN2(1024, 512, 8, channels=c)),
                             "formula": s["params"] + s["buffers"]}
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each process; medians are kept")
    ap.add_argument("--sizes", action="store_true", help="also check the size formulas against the real modules")
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "preflight.json"))
    a = ap.parse_args()
    started = provenance.stamp()
    with tempfile.TemporaryDirectory(prefix="ganatomy-preflight-") as tmp:
        d = Path(tmp)
        files = make_files(d)
        rows = bench(files, a.repeats, d / "out")
    report = {
        "what": "checkpoint pre-flight refusals (issue 18), each in a fresh process; medians of "
                f"{a.repeats} runs",
        "goal": "each refusal in < 2 s and < 300 MB peak RSS (beyond what import core itself takes)",
        "results": rows,
    }
    if a.sizes:
        r = run_measured([sys.executable, "-c", SIZES])
        report["size_formulas"] = json.loads(r["stdout"]) if r["rc"] == 0 else {"error": r["stderr"][-500:]}
        print("size formulas:", report["size_formulas"])
    provenance.write_report(a.out, report, started=started)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
