"""Benchmark: full dissection vs the bare forward passes it cannot avoid, in one run.

    python benchmarks/bench_dissect.py                          # toyworld/town, all layers, 2,000 samples
    python benchmarks/bench_dissect.py --samples 500 --layers layer4
    python benchmarks/bench_dissect.py --published --device cuda --samples 10000 --layers layer4
        # random 256x256 ProGAN in the published LSUN layout + a 28M-parameter segmenter
    python benchmarks/bench_dissect.py --samples 500 --layers layer4 --basis sae
        # all 1,024 features of the layer's sparse dictionary vs its 256 units, same samples

Prints (and writes to docs/reports/dissect_bench*.json) the time of the bare generator +
segmenter passes over the same samples and batch size, the time of ``core.dissect`` (cache
off), their ratio, and images/s. For comparison, the 2018 reference implementation needs
~80 s for one layer of a small 64x64 generator over 500 samples on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import core
from core.base import provenance
from core.base.hooks import layer_names
from core.base.sampling import z_range
from core.models import toynets as nets

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_2018 = {"seconds": 80, "layers": 1, "samples": 500, "model": "64x64 generator",
                  "hardware": "2 CPU cores", "images_per_second_256px_model": 0.4}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def bare_forward(G, seg, n, batch, device, seed=0):
    t = time.perf_counter()
    for a in range(0, n, batch):
        seg.segment(G(z_range(seed, a, min(n, a + batch), G.z_dim, device)))
    sync(device)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--layers", nargs="+", default=None, help="default: every layer but the output")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--published", action="store_true",
                    help="random 256x256 ProGAN (published layout) + 28M-parameter segmenter")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the fastest is kept")
    ap.add_argument("--basis", choices=["units", "pca", "sae"], default="units",
                    help="also dissect one layer in this basis (the shipped or cached one) and report its cost "
                         "against the units' over the same samples")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    started = provenance.stamp()
    device = torch.device(a.device)
    if a.published:
        torch.manual_seed(0)
        G = core.ProGAN(512, (512, 512, 512, 512, 256, 128, 64)).to(device).eval().requires_grad_(False)
        seg = nets.ToySegmenter(widths=(112, 224, 448, 896)).to(device).eval().requires_grad_(False)
        name = "random ProGAN 256x256 (published layout)"
    else:
        G = core.load_generator(a.model, device=device)
        seg = core.load_segmenter("toyworld", device=device)
        name = a.model
    seg_params = sum(p.numel() for p in seg.parameters()) / 1e6 if hasattr(seg, "parameters") else None
    layers = a.layers or [n for n in layer_names(G) if not n.startswith("output")]
    batch = a.batch_size or (64 if device.type == "cuda" else 32)

    basis = None
    if a.basis != "units":
        if len(layers) != 1:
            sys.exit("--basis: give one layer with --layers (a basis belongs to one layer)")
        from core.engine import bases
        basis = bases.fit_basis(G, layers[0], a.basis)
    bare_forward(G, seg, batch, batch, device)        # warm-up (allocator, kernels)
    # alternate the measurements and keep the fastest of each: shared machines drift
    bare_runs, dis_runs, basis_runs = [], [], []
    for _ in range(a.repeats):
        bare_runs.append(bare_forward(G, seg, a.samples, batch, device))
        t = time.perf_counter()
        res = core.dissect(G, seg, layers, a.samples, batch_size=batch, device=device, cache=False)
        sync(device)
        dis_runs.append(time.perf_counter() - t)
        if basis is not None:
            t = time.perf_counter()
            res_b = core.dissect(G, seg, layers, a.samples, batch_size=batch, device=device, cache=False, basis=basis)
            sync(device)
            basis_runs.append(time.perf_counter() - t)
    t_bare, t_dis = min(bare_runs), min(dis_runs)
    out = {
        "model": name, "layers": layers, "units": int(sum(res.iou(x).shape[0] for x in layers)),
        "samples": a.samples, "batch_size": batch, "resolution": res.meta["resolution"],
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {torch.get_num_threads()} threads"),
        "segmenter_params_M": seg_params,
        "bare_forward_seconds": round(t_bare, 2), "dissect_seconds": round(t_dis, 2),
        "ratio": round(t_dis / t_bare, 3),
        "all_runs": {"bare_forward": [round(x, 2) for x in bare_runs], "dissect": [round(x, 2) for x in dis_runs]},
        "images_per_second": round(a.samples / t_dis, 1),
        "inside_dissect": {"forward_seconds": round(res.meta["forward_seconds"], 2),
                           "stats_seconds": round(res.meta["stats_seconds"], 2)},
        "reference_2018": REFERENCE_2018,
    }
    if basis is not None:
        out["basis"] = {"name": basis.name, "features": basis.n_features, "dissect_seconds": round(min(basis_runs), 2),
                        "all_runs": [round(x, 2) for x in basis_runs],
                        "ratio_vs_units": round(min(basis_runs) / t_dis, 3),
                        "ratio_vs_bare": round(min(basis_runs) / t_bare, 3),
                        "inside_dissect": {"forward_seconds": round(res_b.meta["forward_seconds"], 2),
                                           "stats_seconds": round(res_b.meta["stats_seconds"], 2)}}
    print(json.dumps(out, indent=1))
    path = Path(a.out) if a.out else ROOT / "docs" / "reports" / (
        "dissect_bench_published.json" if a.published else
        f"dissect_bench_{a.basis}_{layers[0]}.json" if basis is not None else "dissect_bench.json")
    provenance.write_report(path, out, started=started)


if __name__ == "__main__":
    main()
