"""Layer inversion of real toyworld scenes (#34): train an inverter into a layer of each shipped
generator, then reconstruct held-out real scenes through it; writes docs/reports/inversion.json.

    python scripts/train_inverter.py --scenes town --steps 600 --phase train          # resumable
    python scripts/train_inverter.py --scenes town --steps 600 --phase train --resume
    python scripts/train_inverter.py --scenes town --phase report --scenes-n 100 --invert-steps 100

Training (per scene): core.engine.inversion.train_inverter on the generator's own samples, a
checkpoint under cache/inverters/<scene>-<layer>.ckpt every --every steps (--resume continues from
it; a finished run resumes to itself), the encoder written in fp16 to --out-dir
(cache/inverters/<scene>-<layer>.pt by default; it is not shipped). Report (per scene):
core.studies.inversion.reconstruction_recall on --scenes-n real scenes (held-out seed) and as many of
the generator's own samples (the ceiling), and with --concept a planted omission (the concept's top
--units units of the layer off during the inversion).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

import core
from core.base import provenance
from core.base.cache import atomic_path, weights_hash
from core.engine.inversion import train_inverter
from core.studies.inversion import (
    INVERSION_REAL_SEED,
    load_encoder,
    reconstruction_recall,
    save_encoder,
    segmenter_recall,
)
from core.studies.units import concept_units

ROOT = Path(__file__).resolve().parents[1]


def train(scene: str, a) -> Path:
    G = core.load_generator(f"toyworld/{scene}")
    ck = Path(a.out_dir) / f"{scene}-{a.layer}.ckpt"
    resume = torch.load(ck, weights_only=True) if a.resume and ck.exists() else None
    if resume is not None:
        print(f"{scene}: resuming from step {resume['step']}", flush=True)

    def save(state):
        with atomic_path(ck) as tmp:
            torch.save(state, tmp)

    bar = tqdm(total=a.steps, initial=int(resume["step"]) if resume else 0, desc=f"train {scene}", mininterval=10)

    def progress(t, total, losses):
        bar.update(1)
        if t % 50 == 0:
            bar.set_postfix(layer=f"{losses['layer']:.3f}", image=f"{losses['image']:.3f}")

    enc, state = train_inverter(G, a.layer, a.steps, a.batch, a.lr, a.seed, progress, resume,
                                image_batch=a.image_batch, checkpoint=save, checkpoint_every=a.every)
    bar.close()
    out = Path(a.out_dir) / f"{scene}-{a.layer}.pt"
    save_encoder(out, enc, layer=a.layer, generator=f"toyworld/{scene}", weights=weights_hash(G),
                 log=state["log"])
    log = state["log"]
    first, last = sum(log["layer"][:20]) / max(1, len(log["layer"][:20])), sum(log["layer"][-20:]) / 20
    print(f"{scene}: {out} ({out.stat().st_size / 1e6:.2f} MB), layer loss {first:.3f} -> {last:.3f}, "
          f"{log['seconds']:.0f}s", flush=True)
    return out


def report(scene: str, a, seg, feats) -> dict:
    G = core.load_generator(f"toyworld/{scene}")
    path = Path(a.out_dir) / f"{scene}-{a.layer}.pt"
    enc, meta = load_encoder(path)
    t0 = time.perf_counter()
    bar = tqdm(desc=f"invert {scene}", mininterval=10)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    res = reconstruction_recall(G, seg, enc, scene, a.scenes_n, a.real_seed, steps=a.invert_steps, lr=a.invert_lr,
                                features=feats, layer=a.layer, progress=progress)
    bar.close()
    out = {"encoder": {"path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                       "bytes": path.stat().st_size, "train_steps": meta["log"]["steps"][-1] if meta["log"]["steps"]
                       else 0, "train_seconds": meta["log"]["seconds"],
                       "layer_loss_first20": _mean(meta["log"]["layer"][:20]),
                       "layer_loss_last20": _mean(meta["log"]["layer"][-20:]),
                       "image_l1_first20": _mean(meta["log"]["image"][:20]),
                       "image_l1_last20": _mean(meta["log"]["image"][-20:])},
           **res.summary(), "wall_seconds": time.perf_counter() - t0}
    out["real_segmented"] = segmented(scene, a, seg)
    print(scene, {k: out[k] for k in ("real", "generated")}, flush=True)
    if a.concept:
        t0 = time.perf_counter()
        units = concept_units(G, seg, a.layer, a.concept, ranking="iou", n=a.units)
        res_o = reconstruction_recall(G, seg, enc, scene, a.scenes_n, a.real_seed, steps=a.invert_steps,
                                      lr=a.invert_lr, features=feats, layer=a.layer, units_off=units, ceiling=False)
        out["planted"] = {"concept": a.concept, "units": units, **res_o.summary(),
                          "recall_drop": res_o.drop(res, "real"), "wall_seconds": time.perf_counter() - t0}
        print("planted", a.concept, out["planted"]["recall_drop"][:5], flush=True)
    return out


def segmented(scene: str, a, seg) -> dict:
    """The real scenes themselves through the segmenter: the recall a perfect reconstruction would get."""
    r = segmenter_recall(seg, scene, a.scenes_n, a.real_seed)
    return {"mean_recall": r.mean_recall(), "per_class": r.per_class()}


def _mean(v):
    return float(sum(v) / len(v)) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["town"])
    ap.add_argument("--phase", choices=["train", "report", "both", "segmented"], default="both",
                    help="segmented: only add the real scenes' own segmentation recall to an existing report")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--steps", type=int, default=600, help="encoder training steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image-batch", type=int, default=8, help="samples per step with the image loss")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--out-dir", default=str(ROOT / "cache" / "inverters"))
    ap.add_argument("--scenes-n", type=int, default=100, help="real scenes (and generated samples) inverted")
    ap.add_argument("--real-seed", type=int, default=INVERSION_REAL_SEED)
    ap.add_argument("--invert-steps", type=int, default=100)
    ap.add_argument("--invert-lr", type=float, default=0.01)
    ap.add_argument("--concept", default=None, help="planted omission: this concept's units off")
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", default=str(ROOT / "docs" / "reports" / "inversion.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = provenance.stamp()
    if a.phase in ("train", "both"):
        for scene in a.scenes:
            train(scene, a)
    if a.phase == "segmented":
        seg = core.load_segmenter("toyworld")
        gens = json.loads(Path(a.report).read_text())["generators"]
        for scene in a.scenes:
            gens[f"toyworld/{scene}"]["real_segmented"] = segmented(scene, a, seg)
        print(provenance.write_report(a.report, {"generators": gens}, started=started, part="generators"))
    if a.phase in ("report", "both"):
        seg, feats = core.load_segmenter("toyworld"), core.load_features("toyworld")
        settings = {"layer": a.layer, "scenes_n": a.scenes_n, "real_seed": a.real_seed,
                    "invert_steps": a.invert_steps, "invert_lr": a.invert_lr,
                    "perceptual": "toyworld feature network, encoder stages d2 and d3",
                    "anchor_weight": 0.01, "recall": "per class: real exact pixels of the class that the segmenter "
                    "also calls that class on the reconstruction, pooled over scenes"}
        old = json.loads(Path(a.report).read_text()) if Path(a.report).exists() else {}
        gens = dict(old.get("generators", {}))        # a run for some scenes keeps the others' results
        for scene in a.scenes:
            gens[f"toyworld/{scene}"] = {"settings": settings, **report(scene, a, seg, feats)}
        print(provenance.write_report(a.report, {"generators": gens}, started=started,
                                      part="generators" if old else None))


if __name__ == "__main__":
    main()
