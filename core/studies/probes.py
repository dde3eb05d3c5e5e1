"""Probe sets for classifier dissection (the probe-set protocol of :mod:`core.base.protocols`).

:class:`ToyworldProbes` is toyworld rendered for a classifier: image ``i`` is scene ``i // 3`` of the
scene type ``SCENES[i % 3]`` (town, room, lake in turn) of ``seed``, rendered at the smallest toyworld
size at least the network's input size (toyworld renders 32 … 512) and resized to it (bilinear,
antialiased; 256 -> 224 for EfficientNet). Every pixel carries up to five exact labels (K = 5 label
channels), at the label resolution (default: half the input size, as NetDissect's Broden labels):

- **object / stuff**: toyworld's own label of the pixel (nearest pixel of the rendered label map);
  ``stuff`` are its amorphous regions (sky, grass, road, water, wall, ...), ``object`` the rest;
- **part** (``parts=True``): the object-part expansion of :func:`core.engine.dissection.part_maps`
  (top / bottom / left / right half of each connected component's bounding box: ``door-t``, ...),
  for objects only;
- **colour** (``colours=True``): each label pixel's colour name from the rendered pixels, Broden's
  eleven names (``red-c``, ...): the image is averaged down to the label resolution (area), turned
  to HSV, and named by fixed rules: value < 0.2 black; else saturation < 0.15: white when value
  > 0.8, else grey; else by hue: red < 15° or >= 345°, orange 15–40° (brown when value < 0.6),
  yellow 40–70°, green 70–170°, blue 170–260°, purple 260–290°, pink 290–345°;
- **scene** (``scenes=True``): the scene type as an image-level concept (``town-s``: every pixel of a
  town image), as NetDissect's scene labels cover the whole image.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core import toyworld
from core.base.validate import check_bool, check_int
from core.engine.dissection import part_maps

__all__ = ["ToyworldProbes", "COLOURS", "colour_names"]

COLOURS = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")


def colour_names(images: torch.Tensor) -> torch.Tensor:
    """Broden colour index (into :data:`COLOURS`) per pixel of images [N, 3, H, W] in [-1, 1]."""
    rgb = ((images.float() + 1) / 2).clamp(0, 1)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v, _ = rgb.max(1)
    mn, _ = rgb.min(1)
    c = v - mn
    s = torch.where(v > 0, c / v.clamp(min=1e-8), torch.zeros_like(v))
    cz = c.clamp(min=1e-8)
    h = torch.where(v == r, ((g - b) / cz) % 6, torch.where(v == g, (b - r) / cz + 2, (r - g) / cz + 4)) * 60
    idx = {n: i for i, n in enumerate(COLOURS)}
    out = torch.full(v.shape, idx["red"], dtype=torch.long, device=v.device)
    for lo, hi, name in ((15, 40, "orange"), (40, 70, "yellow"), (70, 170, "green"), (170, 260, "blue"),
                         (260, 290, "purple"), (290, 345, "pink")):
        out[(h >= lo) & (h < hi)] = idx[name]
    out[(out == idx["orange"]) & (v < 0.6)] = idx["brown"]
    grey = s < 0.15
    out[grey] = idx["grey"]
    out[grey & (v > 0.8)] = idx["white"]
    out[v < 0.2] = idx["black"]
    return out


class ToyworldProbes:
    """``n`` toyworld probe images of side ``size`` with exact labels (see the module)."""

    def __init__(self, size: int = 224, n: int = 2000, seed: int = 0, label_size: int | None = None, *,
                 parts: bool = True, colours: bool = True, scenes: bool = True):
        self.size = check_int("size", size, 8, 512, what="an image side in 8 .. 512 (toyworld renders up to 512)")
        self.n = check_int("n", n, 1)
        self.seed = check_int("seed", seed)
        self.label_size = check_int("label_size", label_size if label_size is not None else max(self.size // 2, 1),
                                    1, self.size)
        self.parts, self.colours, self.scenes = (check_bool("parts", parts), check_bool("colours", colours),
                                                 check_bool("scenes", scenes))
        self.render_size = min(s for s in toyworld.SIZES if s >= self.size)
        base = list(toyworld.LABELS)
        stuff = [c for c in base[1:] if c in toyworld.STUFF]
        objects = [c for c in base[1:] if c not in toyworld.STUFF]
        labels = list(base)
        self._part_base = len(labels)
        part_names = [f"{c}-{p}" for c in base[1:] for p in ("t", "b", "l", "r")]
        if parts:
            labels += part_names
        self._colour_base = len(labels)
        if colours:
            labels += [f"{c}-c" for c in COLOURS]
        self._scene_base = len(labels)
        if scenes:
            labels += [f"{s}-s" for s in toyworld.SCENES]
        self.labels = labels
        is_stuff = torch.zeros(len(base), dtype=torch.bool)
        is_stuff[[base.index(c) for c in stuff]] = True
        self._stuff = is_stuff
        self.categories = {"object": objects, "stuff": stuff}
        if parts:
            self.categories["part"] = [f"{c}-{p}" for c in objects for p in ("t", "b", "l", "r")]
        if colours:
            self.categories["colour"] = [f"{c}-c" for c in COLOURS]
        if scenes:
            self.categories["scene"] = [f"{s}-s" for s in toyworld.SCENES]
        self.name = f"toyworld probes (seed {self.seed}, {self.size}px)"
        self.cache_key = (f"toyworld-probes-v1:size={self.size}:labels={self.label_size}:seed={self.seed}:"
                          f"parts={parts}:colours={colours}:scenes={scenes}")

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"ToyworldProbes(size={self.size}, n={self.n}, seed={self.seed}, label_size={self.label_size})"

    def _render(self, start: int, stop: int):
        idx = np.arange(start, stop)
        images = torch.empty(len(idx), 3, self.render_size, self.render_size, device="cpu")
        labels = torch.empty(len(idx), self.render_size, self.render_size, dtype=torch.long, device="cpu")
        scene = torch.as_tensor(idx % len(toyworld.SCENES), device="cpu")
        for s, name in enumerate(toyworld.SCENES):
            rows = np.nonzero(idx % len(toyworld.SCENES) == s)[0]
            if not len(rows):
                continue
            j = idx[rows] // len(toyworld.SCENES)        # consecutive within a scene type
            im, lb = toyworld.render(name, int(j[-1] - j[0] + 1), seed=self.seed, size=self.render_size,
                                     start=int(j[0]))
            images[torch.as_tensor(rows, device="cpu")] = im
            labels[torch.as_tensor(rows, device="cpu")] = lb
        return images, labels, scene

    def batch(self, start: int, stop: int):
        """(images [n, 3, size, size] in [-1, 1], labels [n, K, S, S] long) for probe images start .. stop-1."""
        start = check_int("start", start, 0, self.n - 1)
        stop = check_int("stop", stop, start + 1, self.n)
        images, labels, scene = self._render(start, stop)
        if self.render_size != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True).clamp(-1, 1)
        s, r = self.label_size, self.render_size
        pos = ((torch.arange(s, dtype=torch.float64, device="cpu") + 0.5) * r / s).floor().long().clamp(max=r - 1)
        lab = labels[:, pos][:, :, pos]                                   # nearest rendered pixel
        chans = [lab]
        if self.parts:
            v, h = part_maps(lab.numpy(), len(toyworld.LABELS))
            for p in (torch.from_numpy(v), torch.from_numpy(h)):
                ok = (p >= 0) & ~self._stuff[lab]
                chans.append(torch.where(ok, p + self._part_base, torch.zeros_like(p)))
        if self.colours:
            small = F.interpolate(images, size=(s, s), mode="area")
            chans.append(colour_names(small) + self._colour_base)
        if self.scenes:
            chans.append((scene + self._scene_base).view(-1, 1, 1).expand(-1, s, s))
        return images, torch.stack(chans, 1)
