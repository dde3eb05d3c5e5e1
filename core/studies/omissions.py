"""Omissions on toyworld, where the real scenes' labels are exact: the real-image source
(:class:`ToyworldScenes`), a generator's statistics against its scene type
(:func:`toyworld_omissions`) and a planted omission: a concept's units ablated everywhere
(:func:`planted_omission`); for a user's model, against a folder of its real images
(:func:`folder_omissions`, no exact labels). :func:`chart_png`: the class chart as a PNG image."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from core import toyworld
from core.base.devices import device_of
from core.base.errors import InputError
from core.base.sampling import OMISSIONS_REAL_SEED, OMISSIONS_SEED
from core.base.validate import check_choice, check_int
from core.engine.intervention import Edit
from core.engine.omissions import Edited, Omissions, omissions
from core.studies.image_folder import ImageFolder
from core.studies.units import concept_units

__all__ = ["ToyworldScenes", "toyworld_omissions", "folder_omissions", "planted_omission", "scene_of", "image_size",
           "card_scene", "class_chart", "chart_png", "omission_rule"]


class ToyworldScenes:
    """Real toyworld scenes of one type at ``size`` px, with their exact labels: the real-image
    source of :func:`core.engine.omissions.omissions` (scene ``i`` of a seed is fixed)."""

    labels = list(toyworld.LABELS)

    def __init__(self, scene: str, size: int = 64):
        self.scene = check_choice("scene", scene, toyworld.SCENES)
        self.size = check_int("size", size, 8, 1024, what="an image side in pixels (8 .. 1024)")
        self.name = f"toyworld/{self.scene}@{self.size}"

    def batch(self, seed: int, start: int, stop: int):
        return toyworld.render(self.scene, stop - start, seed=seed, size=self.size, start=start)


def scene_of(generator, scene: str | None = None) -> str:
    """``scene``, else the scene of the generator's model card, else an error naming ``scene``."""
    scene = scene or (getattr(generator, "meta", None) or {}).get("scene")
    if scene not in toyworld.SCENES:
        raise InputError(f"scene: the generator's scene {scene!r} is not a toyworld scene",
                         fix="give scene= " + " or ".join(toyworld.SCENES))
    return scene


@torch.no_grad()
def image_size(generator) -> int:
    """The side of the generator's images (one sample drawn)."""
    return int(generator(torch.zeros(1, generator.z_dim, device=device_of(generator))).shape[-1])


def toyworld_omissions(generator, segmenter, scene: str | None = None, n_samples: int = 2000,
                       seed: int = OMISSIONS_SEED, real_seed: int = OMISSIONS_REAL_SEED, batch_size: int = 50,
                       progress: Callable | None = None, *, cache: bool = True,
                       cached_only: bool = False) -> Omissions | None:
    """:func:`~core.engine.omissions.omissions` of ``generator`` against real ``scene`` scenes (default:
    its model card's) at its own resolution, the real side counted through ``segmenter`` and from the
    exact labels."""
    real = ToyworldScenes(scene_of(generator, scene), image_size(generator))
    return omissions(generator, segmenter, real, n_samples, seed=seed, real_seed=real_seed, batch_size=batch_size,
                     progress=progress, cache=cache, cached_only=cached_only)


def folder_omissions(generator, segmenter, folder, n_samples: int = 2000, seed: int = OMISSIONS_SEED,
                     real_seed: int = OMISSIONS_REAL_SEED, batch_size: int = 50, progress: Callable | None = None, *,
                     resize: bool = False, convert: bool = False, arg: str = "folder", cache: bool = True,
                     cached_only: bool = False) -> Omissions | None:
    """:func:`~core.engine.omissions.omissions` of ``generator`` against a folder of real images
    (:class:`~core.studies.image_folder.ImageFolder` at the generator's resolution, split by ``real_seed``
    into the real half and the floor's half: it needs ``2 n_samples`` images); no exact labels, so no
    segmenter-vs-exact comparison. ``folder``: a path or an :class:`ImageFolder` (then its own size,
    split seed and options; ``real_seed`` must be its seed). Every file is checked before any image is made."""
    real = folder if isinstance(folder, ImageFolder) else ImageFolder(folder, image_size(generator), resize=resize,
                                                                       convert=convert, seed=real_seed, arg=arg)
    return omissions(generator, segmenter, real, n_samples, seed=seed, real_seed=real_seed, batch_size=batch_size,
                     progress=progress, cache=cache, cached_only=cached_only)


def planted_omission(generator, segmenter, concept, layer: str = "layer4", n_units: int = 20,
                     ranking: str = "iou", cache: bool = True) -> tuple[Edited, list[int]]:
    """A generator that omits ``concept`` on purpose: its top ``n_units`` units of ``layer`` for the
    concept (:func:`~core.studies.units.concept_units`) ablated everywhere; with the units."""
    units = concept_units(generator, segmenter, layer, concept, ranking=ranking, n=n_units, cache=cache)
    return Edited(generator, [Edit(layer, units)]), units


def card_scene(generator) -> str | None:
    """The toyworld scene of the generator's model card, or None where it names none (a user model):
    then the real scene type has to be chosen (:func:`toyworld_omissions`'s ``scene=``)."""
    scene = (getattr(generator, "meta", None) or {}).get("scene")
    return scene if scene in toyworld.SCENES else None


def class_chart(res: Omissions, k: int = 12) -> pd.DataFrame:
    """The classes of the paper's chart (ICCV 2019, Fig. 2): the ``k`` classes of largest real
    (training) mean area, largest first, with their rows of :meth:`Omissions.table` (real and
    generated mean areas, relative change (gen - real) / real, where measured the exact labels)."""
    k = check_int("k", k, 1)
    t = res.table()
    return t.sort_values("real_area", ascending=False, kind="stable").head(k).reset_index(drop=True)


def omission_rule(summary: dict) -> str:
    """The rule :meth:`Omissions.omitted` applied, in words, from an :meth:`Omissions.summary`."""
    return (f"relative change (gen − real) / real ≤ {summary['omitted_below']:+.0%} among the classes whose real "
            f"mean area is at least {summary['min_area']:g} of an image")


def chart_png(res: Omissions, k: int = 12, width: int = 640) -> np.ndarray:
    """The class chart (:func:`class_chart`) as an image uint8 [H, ``width``, 3]: per class, its real
    (grey) and generated (blue) mean area as two bars, the relative change written beside them; drawn
    with PIL (no plotting package needed), for ``ganatomy omissions --out``."""
    from PIL import Image, ImageDraw, ImageFont
    k = check_int("k", k, 1)
    width = check_int("width", width, 320, 4096)
    t = class_chart(res, k)
    font = ImageFont.load_default()
    row, top, label_w, note_w = 22, 34, 110, 70
    h = top + row * max(len(t), 1) + 24
    im = Image.new("RGB", (width, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.text((8, 6), f"mean area per class: real (grey) vs generated (blue), {res.n_samples} images each", fill=(0, 0, 0),
           font=font)
    scale = max(float(t.real_area.max()) if len(t) else 0.0, float(t.generated_area.max()) if len(t) else 0.0, 1e-9)
    bar_w = width - label_w - note_w - 16
    for i, r in enumerate(t.itertuples()):
        y = top + i * row
        d.text((8, y + 4), str(r.label)[:16], fill=(0, 0, 0), font=font)
        for j, (v, colour) in enumerate(((r.real_area, (150, 150, 150)), (r.generated_area, (50, 110, 220)))):
            d.rectangle([label_w, y + 2 + 9 * j, label_w + max(1, int(bar_w * v / scale)), y + 9 + 9 * j], fill=colour)
        change = r.relative_change
        note = "n/a" if change != change else f"{change:+.0%}"
        d.text((width - note_w, y + 4), note, fill=(200, 30, 30) if change == change and change <= -0.5 else (0, 0, 0),
               font=font)
    d.text((8, h - 18), f"axis: 0 .. {scale:.3g} of an image; right: relative change (gen - real) / real",
           fill=(90, 90, 90), font=font)
    return np.asarray(im, dtype=np.uint8)
