"""The prepared GPU check (issue 21): what GANatomy does on one accelerator, in one run.

    bash benchmarks/gpu_check.sh                  # on the GPU machine: cuda, 10,000 samples, ~5 minutes
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.json    # the same steps, tiny (tests)

Measured, each against what it is compared with in the same run:
1. dissection of layer4 of a random ProGAN in the published 256x256 LSUN layout with a
   >= 25M-parameter segmenter over ``--samples`` samples: images/s of the bare generator +
   segmenter passes, of ``core.dissect``, and their ratio (issue floor: >= 0.9);
   fp32, and the bf16-autocast forward (labels' agreement with fp32 stated);
2. ACE (eq. 5-6, 150 steps, the paper's sampling) for ``tree`` at layer4 of toyworld/town,
   its dissection and insertion constants included (floor: <= 10 s);
3. what-if latency: one edited batch of 8 images of toyworld/town (the What-if page's edit),
   and of the 256x256 model, p50/p95 over 50 calls (floor: <= 20 ms);
4. two sessions on the card at once: one editing continuously (what-ifs) while the other
   dissects, each in its own thread as a lab server's sessions are; the what-if's latency
   then, and its images checked against the solo ones;
5. peak GPU memory of the whole run.
Writes one JSON (default docs/reports/gpu_check.json) that the README quotes, stamped by
``core.base.provenance`` (command, commit, machine with its GPU, load, versions).
"""
from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import core
from core.base import provenance
from core.base.sampling import z_range
from core.models import toynets as nets

ROOT = Path(__file__).resolve().parents[1]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def bare(G, seg, n, batch, device, autocast=False):
    sync(device)
    t = time.perf_counter()
    for a in range(0, n, batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            seg.segment(G(z_range(0, a, min(n, a + batch), G.z_dim, device)))
    sync(device)
    return time.perf_counter() - t


def latency(fn, device, n):
    fn()
    out = []
    for _ in range(n):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return {"p50_ms": round(1e3 * float(np.percentile(out, 50)), 2),
            "p95_ms": round(1e3 * float(np.percentile(out, 95)), 2), "calls": n}


def published(device, quick):
    torch.manual_seed(0)
    chans = (512, 512, 512, 512, 256, 128, 64) if not quick else (32, 32, 16)
    G = core.ProGAN(512 if not quick else 32, chans).eval().requires_grad_(False)
    seg = nets.ToySegmenter(widths=(112, 224, 448, 896) if not quick else (8, 8, 8, 8)).eval().requires_grad_(False)
    if device.type == "cuda":
        G, seg = G.to(device, memory_format=torch.channels_last), seg.to(device, memory_format=torch.channels_last)
    return G.to(device), seg.to(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="tiny models and counts: checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "gpu_check.json")
    a = ap.parse_args()
    started = provenance.stamp()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (use --device cpu --quick to check the script)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False          # exact fp32 for the fp32 figures
        torch.cuda.reset_peak_memory_stats(device)
    n = 16 if a.quick else a.samples
    batch = 4 if a.quick else a.batch_size
    steps = 3 if a.quick else 150
    calls = 3 if a.quick else 50
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "quick": a.quick}

    # 1. dissection of the published-layout model
    G, seg = published(device, a.quick)
    report["published"] = {"generator_params_M": round(sum(p.numel() for p in G.parameters()) / 1e6, 1),
                           "segmenter_params_M": round(sum(p.numel() for p in seg.parameters()) / 1e6, 1),
                           "resolution": int(G(z_range(0, 0, 1, G.z_dim, device)).shape[-1])}
    bare(G, seg, batch, batch, device)                                    # warm-up
    t_bare = bare(G, seg, n, batch, device)
    t = time.perf_counter()
    res = core.dissect(G, seg, ["layer4"], n, batch_size=batch, cache=False)
    sync(device)
    t_dis = time.perf_counter() - t
    t_bare_bf16 = bare(G, seg, n, batch, device, autocast=True)
    t = time.perf_counter()
    res16 = core.dissect(G, seg, ["layer4"], n, batch_size=batch, cache=False, precision="bf16")
    sync(device)
    t_dis16 = time.perf_counter() - t
    agree = float((res.units("layer4").concept == res16.units("layer4").concept).mean())
    report["dissection"] = {
        "layer": "layer4", "samples": n, "batch_size": batch, "resolution": res.meta["resolution"],
        "bare_images_per_s": round(n / t_bare, 1), "dissect_images_per_s": round(n / t_dis, 1),
        "ratio_to_bare": round(t_bare / t_dis, 3), "inside": {k: round(res.meta[k], 2) for k in
                                                              ("forward_seconds", "stats_seconds", "finalise_seconds")},
        "bf16": {"bare_images_per_s": round(n / t_bare_bf16, 1), "dissect_images_per_s": round(n / t_dis16, 1),
                 "ratio_to_fp32_bare": round(t_bare / t_dis16, 3), "same_best_concept_as_fp32": round(agree, 3),
                 "max_iou_difference": float(np.abs(res.iou("layer4") - res16.iou("layer4")).max())}}

    # 3a. what-if on the published model
    z8 = z_range(3, 0, 8, G.z_dim, device)
    mask = torch.zeros(8, 8)
    mask[2:5, 2:5] = 1
    edit = [core.Edit("layer4", list(range(20)), "insert", 1.0, mask)]
    report["whatif_published"] = latency(lambda: core.generate(G, z8, edit), device, calls)
    G = seg = res = res16 = None                                          # free the card for what follows
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 2. ACE and 3b. what-if on toyworld/town
    town = core.load_generator("toyworld/town", device=device)
    tseg = core.load_segmenter("toyworld", device=device)
    t = time.perf_counter()
    dis = core.dissect(town, tseg, ["layer4"], 40 if a.quick else 400, cache=False)
    k = core.insertion_constants(town, tseg, "layer4", "tree", n_samples=8 if a.quick else 100)
    t_prep = time.perf_counter() - t
    t = time.perf_counter()
    ace = core.ace(town, tseg, "layer4", "tree", n_steps=steps, iou=dis.iou("layer4")[:, tseg.labels.index("tree")],
                   k=k, pool_size=16 if a.quick else 128)
    sync(device)
    t_ace = time.perf_counter() - t
    report["ace"] = {"model": "toyworld/town", "layer": "layer4", "concept": "tree", "steps": steps,
                     "seconds_optimisation": round(t_ace, 2), "seconds_with_dissection_and_k": round(t_ace + t_prep, 2),
                     "top_units": ace.units[:10]}
    zt = z_range(3, 0, 8, town.z_dim, device)
    units = ace.units
    tedit = [core.Edit("layer4", units, "insert", np.asarray(k)[units], mask)]
    report["whatif_town"] = latency(lambda: core.generate(town, zt, tedit), device, calls)

    # 4. two sessions on the card: what-ifs while another session dissects
    solo = core.generate(town, zt, tedit)
    done, lat, wrong = threading.Event(), [], [0]

    def long_session():
        core.dissect(town, tseg, ["layer4", "layer6"], 64 if a.quick else 2000, cache=False)
        done.set()

    th = threading.Thread(target=long_session)
    th.start()
    while not done.is_set():
        sync(device)
        t = time.perf_counter()
        img = core.generate(town, zt, tedit)
        sync(device)
        lat.append(time.perf_counter() - t)
        wrong[0] += int(not torch.equal(img, solo))
    th.join()
    report["two_sessions"] = {"whatif_p50_ms": round(1e3 * float(np.percentile(lat, 50)), 2),
                              "whatif_p95_ms": round(1e3 * float(np.percentile(lat, 95)), 2),
                              "whatifs_during_the_dissection": len(lat), "images_differing_from_solo": wrong[0]}
    if device.type == "cuda":
        report["peak_gpu_memory_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    report["floors"] = {"segmenter_params>=25M": report["published"]["segmenter_params_M"] >= 25,
                        "dissection_ratio_to_bare>=0.9": report["dissection"]["ratio_to_bare"] >= 0.9,
                        "whatif_p95<=20ms": report["whatif_town"]["p95_ms"] <= 20,
                        "ace<=10s": report["ace"]["seconds_optimisation"] <= 10}
    provenance.write_report(a.out, report, started=started)
    print(a.out.read_text())


if __name__ == "__main__":
    main()
