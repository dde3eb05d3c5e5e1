"""Loading any model by name or path: the shipped toyworld segmenter, feature networks and
generators (``core/weights/``), and the published or user-added models of
:mod:`core.models.catalog` (weights found, or fetched on request, by :mod:`core.models.downloads`;
built by their architecture's loader, :mod:`core.models.registry`)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from core.base.budget import size_limits
from core.base.checkpoints import CheckpointError, load_checkpoint, load_state_into
from core.base.errors import ArgumentTypeError, InputError, MissingWeightsError, UnknownNameError
from core.base.hooks import expand_deltas, with_delta
from core.base.packages import MODULE_OF, require
from core.models import catalog, progan, toynets
from core.models.downloads import fetch
from core.models.inception import load_inception
from core.models.registry import load_generator_file, load_segmenter_path

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

__all__ = ["card_quality", "load_segmenter", "load_features", "load_generator", "list_models", "SEGMENTERS",
           "FEATURES", "WEIGHTS", "GAN_DIR", "checkpoint_series", "model_path", "zoo_table", "load_registered",
           "images_seen"]

GAN_DIR = WEIGHTS / "gans"


def _load_toy(cls, filename: str, what: str, script: str):
    def load(device="cpu"):
        path = WEIGHTS / filename
        if not path.exists():
            raise CheckpointError(f"the shipped {what} weights {path} are missing: restore them "
                                  f"with `git checkout -- {path.relative_to(WEIGHTS.parents[1])}` "
                                  f"or retrain with `python {script}`")
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or "state_dict" not in ck:
            raise CheckpointError(f"{path} is not a GANatomy {what} file (no 'state_dict' entry)")
        model = cls()
        load_state_into(model, ck["state_dict"], path)
        model.meta = dict(ck.get("meta", {}))
        return model.to(device).eval().requires_grad_(False)
    return load


SEGMENTERS: dict[str, Callable] = {
    "toyworld": _load_toy(toynets.ToySegmenter, "segmenter_toyworld.pt", "segmenter",
                          "scripts/train_segmenter.py"),
}


def _load_inception(device="cpu"):
    return load_inception(device=device)


FEATURES: dict[str, Callable] = {
    "toyworld": _load_toy(toynets.ToyFeatures, "features_toyworld.pt", "feature network",
                          "scripts/train_features.py"),
    "inception": _load_inception,   # standard FID Inception, from a local weights file
}


def _load(registry: dict, kind: str, name, device, more: str = ""):
    if isinstance(name, str) and name in registry:
        return registry[name](device=device)
    raise InputError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}{more}")


def load_segmenter(name: str = "toyworld", device="cpu", *, download: bool = False, max_params: int | None = None,
                   max_bytes: int | None = None, **options):
    """A segmenter meeting :mod:`core.protocols`: ``"toyworld"`` (the shipped U-Net), a
    published or user-added name (``segformer/ade20k-b0``, weights from ``cache/models/``,
    downloaded only with ``download=True``), or the path of a SegFormer folder / weights file.
    ``max_params`` / ``max_bytes``: the size budget a file must fit (:mod:`core.base.budget`)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise ArgumentTypeError(f"segmenter must be a name or a path (str), got {type(name).__name__} {name!r:.40}")
    with size_limits(max_params, max_bytes):
        if name not in SEGMENTERS:
            if catalog.is_known(name):
                if not catalog.is_known(name, "segmenter"):
                    raise InputError(f"{name} is a generator; load it with core.load_generator({name!r})")
                return load_registered(name, device=device, download=download, **options)
            if ("/" in name or "\\" in name) and Path(name).exists():
                return load_segmenter_path(name, device=device, **options)
            if _looks_like_path(name):
                raise CheckpointError(f"segmenter {name} does not exist: check the path, or give a segmenter name "
                                      f"(toyworld, or one of core.models.status())")
            more = f"; published (weights in {catalog.models_dir()}): " + ", ".join(
                n for n, s in catalog.PUBLISHED.items() if s.kind == "segmenter")
            return _load(SEGMENTERS, "segmenter", name, device, more)
        return _load(SEGMENTERS, "segmenter", name, device)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).suffix.lower() in (
        ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json")


def load_features(name: str = "toyworld", device="cpu"):
    """An image feature network for FID: ``net(images) -> N x D`` (``"toyworld"``: shipped)."""
    return _load(FEATURES, "feature network", name, device)


# ----------------------------------------------------------------------------- generators
#
# A shipped generator is ``core/weights/gans/<name>.pt`` holding {"state_dict": fp16 tensors,
# "meta": model card}, with the card also beside it as ``<name>.json`` (read without loading
# weights). Names: ``toyworld/town`` (final), ``toyworld/town@step-2000`` (a training
# snapshot), ``toyworld/town-nostd`` (a variant; ``@step-N`` works for variants too).

PREFIX = "toyworld/"


def _files():
    return sorted(GAN_DIR.glob("*.pt")) if GAN_DIR.exists() else []


def list_models() -> dict[str, dict]:
    """Every shipped generator by name, with its model card (data, resolution, steps, FID, ...)."""
    out = {}
    for f in _files():
        card = f.with_suffix(".json")
        out[PREFIX + f.stem] = json.loads(card.read_text()) if card.exists() else {}
    return dict(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))


def _sort_key(name: str):
    base, _, tag = name.partition("@")
    step = int(tag[5:]) if tag.startswith("step-") and tag[5:].isdigit() else float("inf")
    return (base, step, tag)


def checkpoint_series(name: str = "toyworld/town") -> list[tuple[int, str]]:
    """``[(step, model name), ...]`` in training order: every ``@step-N`` snapshot of ``name``
    followed by ``name`` itself (the final model) at its trained step count."""
    base = name.partition("@")[0]
    models = list_models()
    if base not in models and not any(m.startswith(base + "@") for m in models):
        raise InputError(f"unknown model {base!r}; shipped models: {', '.join(models) or 'none'}")
    out = []
    for m, card in models.items():
        b, _, tag = m.partition("@")
        if b == base and tag.startswith("step-") and tag[5:].isdigit():
            out.append((int(tag[5:]), m))
    if base in models:
        final = int(models[base].get("steps", 0))
        if not out or final > out[-1][0]:
            out.append((final, base))
    return out


def images_seen(card: dict | None) -> int | None:
    """Real images a shipped model was trained on: its card's ``images`` (summed over stretches of
    different batch sizes), else steps x batch; None where the card says neither."""
    card = card or {}
    if card.get("images"):
        return int(card["images"])
    if card.get("steps") and card.get("batch"):
        return int(card["steps"]) * int(card["batch"])
    return None


def card_quality(card: dict | None) -> dict:
    """The one FID and MS-SWD of a model card that every listing shows (the CLI, the Models page,
    Training evolution, the README's tables), and where it comes from: a training snapshot's is its
    series evaluation (every checkpoint at the same sample count, ``scripts/report_gans.py``), a
    model's its evaluation against 10,000 real scenes; a card never evaluated falls back to the
    training-time figure, and says so."""
    card = card or {}
    for fid_key, swd_key, source in (("series_fid", "series_ms_swd", "series evaluation"),
                                     ("eval_fid_10k_real", "eval_ms_swd", "evaluation, 10k real scenes"),
                                     ("fid", "ms_swd", "training-time")):
        if card.get(fid_key) is not None and (fid_key != "series_fid" or card.get("eval_fid_10k_real") is None):
            return {"fid": card[fid_key], "ms_swd": card.get(swd_key), "source": source}
    return {"fid": None, "ms_swd": None, "source": None}


def zoo_table(models: dict[str, dict] | None = None) -> list[dict]:
    """One row per shipped generator (training snapshots left out), from its model card: what it
    was trained on and for how long, and how good its samples are (FID in the toyworld feature
    space, its earliest snapshot's FID, real-vs-real, MS-SWD; None where not evaluated)."""
    models = list_models() if models is None else models
    rows = []
    for name, card in models.items():
        if "@" in name:
            continue
        card = card or {}
        earliest = card.get("eval_fid_earliest") or {}
        seconds, images = card.get("train_seconds"), images_seen(card)
        rows.append({
            "model": name, "scene": card.get("scene"), "variant": card.get("variant"),
            "resolution": card.get("resolution"), "steps": card.get("steps"),
            "real images (k)": None if images is None else round(images / 1000),
            "FID": card_quality(card)["fid"],
            "FID earliest": earliest.get("fid"), "earliest step": earliest.get("steps"),
            "FID real-vs-real": card.get("eval_fid_real_vs_real"),
            "MS-SWD": card_quality(card)["ms_swd"],
            "MS-SWD earliest": (earliest.get("swd") or {}).get("avg"),
            "MS-SWD real-vs-real": card.get("eval_ms_swd_real_vs_real"),
            "snapshots": sum(1 for m in models if m.startswith(name + "@")),
            "training hours": None if seconds is None else round(seconds / 3600, 2),
            "hardware": card.get("hardware"), "loss": card.get("loss"),
        })
    return rows


def model_path(name: str) -> Path:
    """Weights file of a shipped model name; a clear error lists the names when unknown."""
    if not name.startswith(PREFIX):
        raise InputError(f"{name!r} is not a shipped model name (they start with {PREFIX!r})")
    path = GAN_DIR / f"{name[len(PREFIX):]}.pt"
    if "/" in name[len(PREFIX):] or not path.exists():
        known = ", ".join(list_models()) or "none shipped yet"
        raise InputError(f"unknown model {name!r}; shipped models: {known}")
    return path


def load_generator(name_or_path, device="cpu", pixelnorm: bool | None = None, *, arch: str | None = None,
                   download: bool = False, max_params: int | None = None, max_bytes: int | None = None, **options):
    """Load a generator, never executing code from a file:

    - a shipped name (``toyworld/town``, see :func:`list_models`);
    - a published or user-added name (``progan/churchoutdoor``, ``stylegan2/church``,
      ``biggan/deep-256``, see :func:`core.models.status`): weights from ``cache/models/``,
      downloaded only with ``download=True``;
    - a checkpoint path: ProGAN (e.g. a published ``*_lsun.pth``), StyleGAN2 (rosinality
      ``g_ema``) or BigGAN (``pytorch-pretrained-biggan``), detected from the keys or given as
      ``arch``.

    ``options`` go to the architecture's loader (``truncation``, ``class_index``, ``noise_mode``).
    A file must first fit the size budget (``max_params`` / ``max_bytes``, else
    ``$GANATOMY_MAX_PARAMS`` / ``$GANATOMY_MAX_BYTES``, else defaults sized for the published
    models; :mod:`core.base.budget`) and hold finite weights that give finite images.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ArgumentTypeError(f"generator must be a model name or a path (str), got {type(name_or_path).__name__} "
                                f"{name_or_path!r:.40}")
    s = os.fspath(name_or_path)
    with size_limits(max_params, max_bytes):
        if s.startswith(PREFIX):
            if arch not in (None, "progan") or options:
                raise ArgumentTypeError(f"shipped model {s} is a ProGAN; it takes no {arch or ', '.join(options)}")
            path = model_path(s)
            return progan.from_checkpoint(load_checkpoint(path), path, s, pixelnorm).to(device).eval() \
                .requires_grad_(False)
        if pixelnorm is not None:
            options["pixelnorm"] = pixelnorm
        if not Path(s).exists() and catalog.is_known(s):
            if not catalog.is_known(s, "generator"):
                raise InputError(f"{s} is a segmenter; load it with core.load_segmenter({s!r})")
            return load_registered(s, device=device, download=download, **options)
        return load_generator_file(s, arch=arch, device=device, **options)


_chain = threading.local()
MAX_REWRITE_CHAIN = 8


def _load_rewrite(name: str, entry: dict, path: Path, device, options: dict):
    """A saved rewrite (:mod:`core.models.rewrites`): its base model loaded by name, the stored deltas
    (read with ``weights_only=True``) added to a private copy. A chain of rewrites of rewrites is
    followed up to MAX_REWRITE_CHAIN deep (a loop is refused)."""
    if options:
        raise ArgumentTypeError(f"{name} is a rewrite; it takes no {', '.join(options)}",
                                fix="give options to its base model's entry instead")
    seen = getattr(_chain, "names", None)
    if seen is None:
        seen = _chain.names = []
    if name in seen or len(seen) >= MAX_REWRITE_CHAIN:
        raise CheckpointError(f"{name}: its chain of bases ({' -> '.join(seen + [name])}) loops or is deeper than "
                              f"{MAX_REWRITE_CHAIN}", fix="save the rewrite on a model that is not itself a rewrite")
    seen.append(name)
    base_name = entry.get("base", "")
    if not (catalog.is_known(base_name, "generator") or base_name.startswith(PREFIX)):
        seen.pop()
        raise CheckpointError(f"{name}: its base model {base_name!r} is no longer registered (removed?)",
                              fix=f"restore {base_name!r} (Models page, Recently removed) or remove {name!r} "
                                  f"(core.models.unregister({name!r}, confirm={name!r}))")
    try:
        base = load_generator(base_name, device=device)
        stored = load_checkpoint(path)
        model = with_delta(base, expand_deltas(stored))
    except (ArgumentTypeError, UnknownNameError) as e:
        raise CheckpointError(f"{name}: its rewrite no longer fits its base model {entry.get('base')!r} ({e})",
                              fix=f"remove it (core.models.unregister({name!r}, confirm={name!r})) and rewrite again") \
            from None
    finally:
        seen.pop()
    model.source = name
    return model


def load_registered(name: str, device="cpu", download: bool = False, **options):
    """Load a published or user-added model by name (generator or segmenter)."""
    if name in catalog.PUBLISHED:
        s = catalog.PUBLISHED[name]
        for pkg in s.packages:     # say what to install before any download
            require(MODULE_OF.get(pkg, pkg), pkg, f"{s.arch} models such as {s.name}")
        path = fetch(name, download=download)
        kind, arch, opts = s.kind, s.arch, {**s.options, **options}
    else:
        entry = catalog.user_models().get(name)
        if entry is None:
            raise UnknownNameError(f"unknown model {name!r}; published: {', '.join(catalog.PUBLISHED)}; "
                                   f"added: {', '.join(catalog.user_models()) or 'none'}")
        path = Path(entry["path"])
        if not path.exists():
            raise MissingWeightsError(f"{name}: its weights {path} are gone; put the file back there or "
                                      f"remove the entry (core.models.unregister({name!r}, confirm={name!r}))")
        kind, arch, opts = entry["kind"], entry["arch"], {**entry.get("options", {}), **options}
        if arch == "rewrite":
            return _load_rewrite(name, entry, path, device, opts)
    if kind == "generator":
        model = load_generator_file(path, arch=arch, device=device, **opts)
    else:
        model = load_segmenter_path(path, arch=arch, device=device, **opts)
    model.source = name
    return model
