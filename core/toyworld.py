"""toyworld: procedurally rendered scenes with pixel-exact segmentation.

``render(scene, n, seed, size=128)`` returns ``(images, labels)``: images are a float tensor
N x 3 x H x W in [-1, 1], labels a long tensor N x H x W indexing :data:`LABELS`
(index 0, ``"-"``, is "unlabeled"; toyworld covers every pixel, so it never occurs in a
rendered scene, but segmenters and dissection keep the slot for protocol compatibility).

Scenes are deterministic by ``(seed, index)``: all random parameters of a scene come from one
row of a single uniform draw, so scene *i* of a seed is the same whether 10 or 10,000 scenes
are rendered (that lets dissection regenerate an image strip from a seed and an index).

Rendering is vectorised over the batch. Every paint writes an integer *slot* id into one
N x H x W map (painter's algorithm, back to front); colour, texture, lighting and label are
resolved once at the end by table look-ups, so a paint costs one mask and one masked fill.

Context rules (what a generator trained on toyworld has to learn; checked over 10,000 scenes
by ``tests/test_toyworld.py`` using the amodal layer masks from ``return_layers=True``):

1. Doors stand on a wall at its ground line: every door lies inside a building wall
   (outdoors) or the back wall of a room (indoors), and the pixel row under a door's bottom
   edge is ground (grass or road) or floor — never sky, tree, water or wall.
2. Windows lie inside walls (the building's wall, or a room's back wall).
3. Clouds and the sun lie in the sky: entirely above the horizon, painted right after the sky,
   so anything else occludes them.
4. Boats lie on water: the row under a hull's bottom edge is open water (not shore).
5. Trees, bushes, lamps and fences stand on the ground (the row under their base is grass or
   road); furniture, plants, rugs and room lamps stand on the floor.
6. Objects occlude each other in depth order: the label of a pixel is the concept of the
   last-painted layer covering it (mountains hide clouds, trees hide walls and doors, ...).

Appearance varies within every concept (hue, saturation, brightness, size, count, texture,
pattern, time of day and lighting), so that a unit that finds a concept must find it across
appearances: no concept has a single colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.base.errors import InputError

__all__ = ["LABELS", "SCENES", "SCENE_CONCEPTS", "SIZES", "LABEL_COLORS", "render", "colorize",
           "label_index", "STUFF"]

LABELS: list[str] = [
    "-", "sky", "cloud", "sun", "mountain", "grass", "road", "building", "roof", "window",
    "door", "tree", "trunk", "bush", "fence", "lamp", "water", "boat", "wall", "floor",
    "ceiling", "bed", "sofa", "table", "painting", "rug", "plant", "curtain",
]
_LID = {name: i for i, name in enumerate(LABELS)}

SCENES: tuple[str, ...] = ("town", "room", "lake")

# Stuff: amorphous regions without a shape of their own (the concept maps' "objects only" hides them).
STUFF: tuple[str, ...] = ("sky", "cloud", "mountain", "grass", "road", "water", "wall", "floor", "ceiling")

SIZES: tuple[int, ...] = (32, 64, 128, 256, 512)

# Concepts each scene type can contain (checked by the tests to actually appear).
SCENE_CONCEPTS: dict[str, tuple[str, ...]] = {
    "town": ("sky", "cloud", "sun", "mountain", "grass", "road", "building", "roof", "window",
             "door", "tree", "trunk", "bush", "fence", "lamp"),
    "room": ("wall", "floor", "ceiling", "window", "door", "bed", "sofa", "table", "painting",
             "lamp", "rug", "plant", "curtain"),
    "lake": ("sky", "cloud", "sun", "mountain", "water", "grass", "tree", "trunk", "boat",
             "building", "roof", "window", "door"),
}

_NCOLS = 1024  # uniform numbers drawn per scene (one row per scene; prefix-stable)


def label_index(name: str) -> int:
    """Index of a concept name in :data:`LABELS` (clear error listing them otherwise)."""
    try:
        return _LID[name]
    except KeyError:
        raise InputError(f"unknown concept {name!r}; toyworld concepts are: "
                         f"{', '.join(LABELS[1:])}") from None


def _label_colors() -> torch.Tensor:
    """A fixed, distinct display colour per label (for label-map visualisations)."""
    fixed = {
        "-": (0, 0, 0), "sky": (135, 190, 240), "cloud": (235, 235, 245), "sun": (255, 215, 0),
        "mountain": (120, 110, 150), "grass": (80, 170, 60), "road": (90, 90, 90),
        "building": (190, 120, 90), "roof": (150, 40, 40), "window": (40, 110, 220),
        "door": (110, 60, 20), "tree": (20, 110, 40), "trunk": (95, 70, 40),
        "bush": (120, 200, 110), "fence": (230, 200, 140), "lamp": (255, 140, 0),
        "water": (30, 70, 160), "boat": (240, 60, 160), "wall": (225, 205, 170),
        "floor": (160, 110, 70), "ceiling": (245, 245, 220), "bed": (200, 60, 200),
        "sofa": (60, 200, 200), "table": (200, 200, 40), "painting": (255, 90, 90),
        "rug": (140, 40, 200), "plant": (0, 220, 120), "curtain": (250, 150, 200),
    }
    return torch.tensor([fixed[name] for name in LABELS], dtype=torch.uint8, device="cpu")


LABEL_COLORS: torch.Tensor = _label_colors()


def colorize(labels: torch.Tensor) -> torch.Tensor:
    """Label map(s) [..., H, W] -> uint8 RGB [..., H, W, 3] with :data:`LABEL_COLORS`."""
    return LABEL_COLORS.to(labels.device)[labels.long().clamp(0, len(LABELS) - 1)]


# ----------------------------------------------------------------------------- random draws

class _Draw:
    """Hands out columns of one uniform [N, C] draw, in code order (prefix-stable per scene)."""

    def __init__(self, u: torch.Tensor):
        self.u_ = u
        self.i = 0

    def u(self, lo=0.0, hi=1.0) -> torch.Tensor:
        if self.i >= self.u_.shape[1]:
            raise RuntimeError("toyworld: scene uses more random numbers than _NCOLS")
        col = self.u_[:, self.i]
        self.i += 1
        return lo + (hi - lo) * col

    def coin(self, p) -> torch.Tensor:
        return self.u() < p

    def pick(self, k: int) -> torch.Tensor:
        return (self.u() * k).long().clamp_(max=k - 1)


def _hsv(h, s, v) -> torch.Tensor:
    """Vectorised HSV -> RGB; h, s, v are [N] tensors (h wraps), result [N, 3] in [0, 1]."""
    h = torch.remainder(h, 1.0)
    k = torch.tensor([5.0, 3.0, 1.0], device="cpu")
    kk = torch.remainder(k[None] + h[:, None] * 6.0, 6.0)
    f = v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)
    return f


def _select(idx: torch.Tensor, options: list[torch.Tensor]) -> torch.Tensor:
    """Row-wise choice between option tensors [N, ...] by an integer index [N]."""
    stacked = torch.stack(options, 0)
    return stacked[idx, torch.arange(idx.shape[0], device="cpu")]


def _color(D: _Draw, choices: list[tuple]) -> torch.Tensor:
    """Draw an [N, 3] colour from a mixture of HSV boxes ((h0,h1),(s0,s1),(v0,v1))."""
    which = D.pick(len(choices))
    opts = [_hsv(D.u(*h), D.u(*s), D.u(*v)) for h, s, v in choices]
    return _select(which, opts)


# ----------------------------------------------------------------------------- canvas
#
# Masks are uint8 tensors (0/1), never bool: on CPU, broadcast uint8 arithmetic is vectorised
# while bool logic and comparisons producing bool are not (5-20x slower at these sizes).
# Rectangles and window grids are separable (rows x columns); round shapes are row spans
# looked up in a prefix table; painting is uint8 arithmetic on the slot map.

_TILES: dict[int, torch.Tensor] = {}
_PREFIX: dict[int, torch.Tensor] = {}


def _u8(b: torch.Tensor) -> torch.Tensor:
    return b.to(torch.uint8)


def _noise_tile(size: int) -> torch.Tensor:
    """A fixed [2S, 2S] texture tile in about [-1, 1] (smooth blobs + fine grain)."""
    if size not in _TILES:
        g = torch.Generator().manual_seed(20190101)
        t = 2 * size
        coarse = torch.rand(1, 1, max(2, t // 16), max(2, t // 16), generator=g, device="cpu") * 2 - 1
        mid = torch.rand(1, 1, max(2, t // 4), max(2, t // 4), generator=g, device="cpu") * 2 - 1
        fine = torch.rand(1, 1, t, t, generator=g, device="cpu") * 2 - 1
        tile = (0.55 * F.interpolate(coarse, size=(t, t), mode="bilinear", align_corners=False)
                + 0.3 * F.interpolate(mid, size=(t, t), mode="bilinear", align_corners=False)
                + 0.25 * fine)
        _TILES[size] = tile[0, 0].contiguous()
    return _TILES[size]


def _prefix(size: int) -> torch.Tensor:
    """P[j, i] = 1 if i < j: a row span [a, b) is P[b] - P[a]."""
    if size not in _PREFIX:
        _PREFIX[size] = _u8(torch.arange(size, device="cpu").view(1, -1)
                            < torch.arange(size + 1, device="cpu").view(-1, 1))
    return _PREFIX[size]


@dataclass
class _Slot:
    name: str
    concept: int
    color: torch.Tensor          # [N, 3] base colour (before lighting)
    grad: torch.Tensor | None    # [N, 3] colour change per unit of image height
    tex: tuple                   # amplitudes (noise, hlines, vlines, ripple): float or [N]
    emissive: torch.Tensor | None  # [N] bool: unaffected by scene lighting


class _Canvas:
    def __init__(self, n: int, size: int, record: bool, omit: frozenset = frozenset()):
        self.n, self.size, self.record, self.omit = n, size, record, omit
        ar = (torch.arange(size, dtype=torch.float32, device="cpu") + 0.5) / size
        self.xs = ar.view(1, 1, size)
        self.ys = ar.view(1, size, 1)
        self.px = 1.0 / size
        self.inst = torch.zeros(n, size, size, dtype=torch.uint8, device="cpu")
        self.slots: list[_Slot] = [_Slot("-", 0, torch.zeros(n, 3, device="cpu"), None, (0, 0, 0, 0), None)]
        self.layers: dict[str, torch.Tensor] = {}
        self.light = torch.ones(n, 3, device="cpu")

    # -- slots and paint
    def slot(self, name, color, grad=None, noise=0.0, hlines=0.0, vlines=0.0,
             ripple=0.0, emissive=None) -> int:
        """Register a layer named ``concept`` or ``concept/part`` (e.g. ``door/0``)."""
        concept = name.split("/")[0]
        self.slots.append(_Slot(name, _LID[concept], color, grad, (noise, hlines, vlines, ripple),
                                emissive))
        if len(self.slots) > 255:
            raise RuntimeError("toyworld: too many slots for a uint8 slot map")
        return len(self.slots) - 1

    def paint(self, k: int, mask: torch.Tensor | None, present: torch.Tensor | None = None):
        """Paint slot ``k`` where ``mask`` (uint8, broadcastable to N x H x W) is 1 (nothing for an
        omitted concept: what lies behind it shows)."""
        if self.slots[k].concept in self.omit:
            return
        if mask is None:
            mask = torch.ones(1, 1, 1, dtype=torch.uint8, device="cpu")
        if present is not None:
            mask = mask * _u8(present).view(-1, 1, 1)
        mask = mask.expand(self.n, self.size, self.size)
        self.inst.mul_(1 - mask).add_(mask * k)
        if self.record:
            name = self.slots[k].name
            self.layers[name] = torch.maximum(self.layers[name], mask) if name in self.layers \
                else mask.clone()

    # -- shapes (coordinates normalised to [0, 1]; params are [N] tensors)
    def bx(self, x0, x1):
        return _u8((self.xs >= x0.view(-1, 1, 1)) & (self.xs < x1.view(-1, 1, 1)))   # N 1 W

    def by(self, y0, y1):
        return _u8((self.ys >= y0.view(-1, 1, 1)) & (self.ys < y1.view(-1, 1, 1)))   # N H 1

    def rect(self, x0, x1, y0, y1):
        return self.by(y0, y1) * self.bx(x0, x1)

    def span(self, xl, xr, rows):
        """Row spans: in row y, columns with centre in [xl[y], xr[y]); rows [N, H, 1] bool."""
        s = self.size
        a = torch.ceil(xl * s - 0.5).clamp(0, s)
        b = torch.maximum(torch.ceil(xr * s - 0.5).clamp(0, s), a)
        a = torch.where(rows, a, 0.0).long().view(-1)
        b = torch.where(rows, b, 0.0).long().view(-1)
        P = _prefix(s)
        return (P.index_select(0, b) - P.index_select(0, a)).view(self.n, s, s)

    def ellipse(self, cx, cy, rx, ry):
        dy = (self.ys - cy.view(-1, 1, 1)) / ry.view(-1, 1, 1)
        half = rx.view(-1, 1, 1) * torch.sqrt((1.0 - dy * dy).clamp_min(0.0))
        c = cx.view(-1, 1, 1)
        return self.span(c - half, c + half, dy.abs() < 1.0)

    def trapezoid(self, cx, y0, y1, half_top, half_bottom):
        """Rows y0..y1, half-width varying linearly from half_top to half_bottom."""
        t = (self.ys - y0.view(-1, 1, 1)) / (y1 - y0).clamp_min(1e-6).view(-1, 1, 1)
        half = half_top.view(-1, 1, 1) + (half_bottom - half_top).view(-1, 1, 1) * t
        c = cx.view(-1, 1, 1)
        return self.span(c - half, c + half, (t >= 0) & (t < 1))

    def below(self, curve):  # curve [N, 1, W]: rows at or below it
        return _u8(self.ys >= curve)

    def rows(self, cond):    # [N, H, 1] bool -> uint8
        return _u8(cond)

    def wmin(self, w):
        """Thin parts stay at least ~1.5 px wide at any size."""
        return torch.clamp(w, min=1.5 * self.px)

    # -- finish
    def finish(self, tile_offsets, hperiod, vperiod, ripple_freq):
        n, s = self.n, self.size
        pal = torch.stack([sl.color for sl in self.slots], 1)                      # N K 3
        grad = torch.stack([sl.grad if sl.grad is not None else torch.zeros(n, 3, device="cpu")
                            for sl in self.slots], 1)
        emis = torch.stack([sl.emissive if sl.emissive is not None
                            else torch.zeros(n, dtype=torch.bool, device="cpu") for sl in self.slots], 1)
        lit = torch.where(emis[..., None], torch.ones_like(pal), self.light[:, None, :])
        pal, grad = pal * lit, grad * lit
        amps = [torch.stack([torch.as_tensor(sl.tex[i], dtype=torch.float32, device="cpu").expand(n)
                             for sl in self.slots], 1) for i in range(4)]           # 4 x [N K]

        idx = self.inst.view(n, s * s).long()

        def look(table):  # [N, K] -> [N, H, W]  (2-D gather: the fast path)
            return torch.gather(table, 1, idx).view(n, s, s)

        tile = _noise_tile(s)
        oy, ox = tile_offsets
        noise = torch.stack([tile[a:a + s, b:b + s] for a, b in zip(oy.tolist(), ox.tolist())])
        hl = -(torch.remainder(self.ys / hperiod.view(n, 1, 1), 1.0) < 0.22).float()  # N H 1
        vl = -(torch.remainder(self.xs / vperiod.view(n, 1, 1), 1.0) < 0.22).float()  # N 1 W
        tex = 1.0 + look(amps[0]) * noise
        if bool(amps[1].any()):
            tex += look(amps[1]) * hl
        if bool(amps[2].any()):
            tex += look(amps[2]) * vl
        if bool(amps[3].any()):
            rip = torch.sin(2 * math.pi * self.ys * ripple_freq.view(n, 1, 1) + 2.5 * noise)
            tex += look(amps[3]) * rip
        has_grad = bool(grad.any())
        chans = []
        for c in range(3):
            col = look(pal[..., c].contiguous())
            if has_grad:
                col = torch.addcmul(col, look(grad[..., c].contiguous()), self.ys)
            chans.append(col)
        img = torch.stack(chans, 1) * tex.unsqueeze(1)
        images = img.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)
        lut = torch.tensor([sl.concept for sl in self.slots], dtype=torch.long, device="cpu")
        labels = lut[idx].view(n, s, s)
        return images, labels


# ----------------------------------------------------------------------------- shared pieces

def _time_of_day(D: _Draw, p_day=0.6, p_dusk=0.25):
    r = D.u()
    return torch.where(r < p_day, 0, torch.where(r < p_day + p_dusk, 1, 2))  # 0 day 1 dusk 2 night


def _sky(C: _Canvas, D: _Draw, horizon, tod):
    top = _select(tod, [_hsv(D.u(0.56, 0.63), D.u(0.45, 0.8), D.u(0.7, 0.95)),
                        _hsv(D.u(0.68, 0.8), D.u(0.35, 0.6), D.u(0.4, 0.65)),
                        _hsv(D.u(0.6, 0.7), D.u(0.55, 0.9), D.u(0.06, 0.18))])
    low = _select(tod, [_hsv(D.u(0.52, 0.6), D.u(0.1, 0.35), D.u(0.85, 1.0)),
                        _hsv(D.u(0.0, 0.1), D.u(0.45, 0.8), D.u(0.8, 1.0)),
                        _hsv(D.u(0.6, 0.72), D.u(0.35, 0.7), D.u(0.18, 0.35))])
    grad = (low - top) / horizon.view(-1, 1)
    k = C.slot("sky", top, grad, noise=0.03)
    C.paint(k, None)

    # sun: day and dusk only, fully above the horizon
    r = D.u(0.035, 0.07)
    sun_p = torch.where(tod == 0, D.u() < 0.65, torch.where(tod == 1, D.u() < 0.85, False))
    sx = D.u(0.08, 0.92)
    lo_y = torch.where(tod == 1, horizon - 0.22, r + 0.03)
    sy = lo_y + D.u() * ((horizon - r - 0.02) - lo_y).clamp_min(0)
    sun_c = _select(tod, [_hsv(D.u(0.12, 0.17), D.u(0.1, 0.5), D.u(0.97, 1.0)),
                          _hsv(D.u(0.0, 0.09), D.u(0.6, 0.9), D.u(0.95, 1.0)),
                          torch.ones(C.n, 3, device="cpu")])
    k = C.slot("sun", sun_c, noise=0.02, emissive=torch.ones(C.n, dtype=torch.bool, device="cpu"))
    C.paint(k, C.ellipse(sx, sy, r, r) * C.rows(C.ys < horizon.view(-1, 1, 1)), sun_p)

    # clouds: up to three, each two overlapping ellipses, fully above the horizon
    for j in range(3):
        p = D.coin([0.7, 0.5, 0.3][j])
        rx = D.u(0.06, 0.14)
        ry = rx * D.u(0.25, 0.45)
        cx = D.u(0.0, 1.0)
        cy = D.u(0.04, 1.0) * (horizon - 2.2 * ry - 0.06).clamp_min(0) + 1.6 * ry + 0.02
        col = _select(tod, [_hsv(D.u(0.55, 0.65), D.u(0.0, 0.12), D.u(0.85, 1.0)),
                            _hsv(D.u(0.9, 1.05), D.u(0.2, 0.5), D.u(0.75, 1.0)),
                            _hsv(D.u(0.6, 0.7), D.u(0.05, 0.25), D.u(0.25, 0.42))])
        k = C.slot("cloud", col, noise=0.1)
        off = D.u(-0.5, 0.5) * rx
        m = torch.maximum(C.ellipse(cx, cy, rx, ry), C.ellipse(cx + off, cy - 0.6 * ry, rx * 0.55, ry * 1.1))
        C.paint(k, m * C.rows(C.ys < horizon.view(-1, 1, 1)), p & (horizon > 4 * ry + 0.08))


def _mountains(C: _Canvas, D: _Draw, horizon, p):
    present = D.coin(p)
    prof = torch.zeros(C.n, 1, C.size, device="cpu")
    for _ in range(3):
        px, w = D.u(-0.1, 1.1), D.u(0.15, 0.45)
        h = D.u(0.05, 0.28) * (horizon - 0.06).clamp_min(0) / 0.45
        tri = (1.0 - (C.xs - px.view(-1, 1, 1)).abs() / w.view(-1, 1, 1)).clamp_min(0)
        prof = torch.maximum(prof, h.view(-1, 1, 1) * tri)
    phase = D.u(0, 6.3)
    prof = prof + 0.008 * torch.sin(C.xs * 47.0 + phase.view(-1, 1, 1))
    curve = horizon.view(-1, 1, 1) - prof
    col = _color(D, [((0.55, 0.72), (0.15, 0.45), (0.35, 0.65)),   # blue-grey
                     ((0.22, 0.4), (0.25, 0.55), (0.25, 0.5)),      # green
                     ((0.05, 0.12), (0.2, 0.5), (0.3, 0.55))])      # brown
    k = C.slot("mountain", col, noise=0.12)
    C.paint(k, C.below(curve) * C.rows(C.ys < horizon.view(-1, 1, 1)), present)


def _grass_color(D):
    return _color(D, [((0.2, 0.36), (0.45, 0.85), (0.3, 0.65)),
                      ((0.12, 0.2), (0.4, 0.7), (0.4, 0.7))])      # dry / yellowish


def _foliage_color(D):
    return _color(D, [((0.22, 0.4), (0.45, 0.9), (0.2, 0.55)),
                      ((0.25, 0.45), (0.3, 0.6), (0.15, 0.35)),    # dark
                      ((0.02, 0.12), (0.6, 0.9), (0.45, 0.8))])    # autumn


def _tree(C: _Canvas, D: _Draw, present, x, base, scale, tag=""):
    """A tree standing with its trunk's bottom edge at ``base`` (trunk + foliage)."""
    tw = C.wmin(D.u(0.014, 0.028) * scale)
    th = D.u(0.05, 0.12) * scale
    conifer = D.coin(0.35)
    rx = D.u(0.045, 0.09) * scale
    ry = rx * D.u(0.9, 1.35)
    trunk_c = _color(D, [((0.05, 0.1), (0.4, 0.7), (0.2, 0.42)), ((0.0, 1.0), (0.0, 0.1), (0.2, 0.4))])
    fol_c = _foliage_color(D)
    k = C.slot("trunk/" + tag, trunk_c, noise=0.12, vlines=0.08)
    top = base - th
    C.paint(k, C.rect(x - tw / 2, x + tw / 2, top - 0.01, base), present)
    k = C.slot("tree/" + tag, fol_c, noise=0.3)
    ell = C.ellipse(x, top - 0.7 * ry, rx, ry)
    ch = ry * 2.4
    tri = C.trapezoid(x, top - ch + 0.3 * ry, top + 0.3 * ry, torch.zeros_like(x), rx * 1.05)
    C.paint(k, tri, present & conifer)
    C.paint(k, ell, present & ~conifer)


def _building(C: _Canvas, D: _Draw, present, x0, x1, base, top, tod, tag, door_p=0.85,
              max_cols=4, door_frac=0.55):
    """Wall with window grid, a door at the wall's ground line, and a gable or flat roof."""
    w = x1 - x0
    wall_c = _color(D, [((0.0, 0.05), (0.45, 0.7), (0.4, 0.68)),    # brick
                        ((0.07, 0.13), (0.2, 0.45), (0.68, 0.9)),   # beige
                        ((0.0, 1.0), (0.0, 0.08), (0.55, 0.95)),    # white / grey
                        ((0.42, 0.68), (0.18, 0.4), (0.5, 0.8))])   # pastel blue-green
    brick = D.coin(0.5).float() * 0.14
    k = C.slot("building/" + tag, wall_c, noise=0.07, hlines=brick)
    C.paint(k, C.rect(x0, x1, top, base), present)

    # door geometry first: windows keep clear of the ground floor
    dh = torch.minimum(D.u(0.07, 0.13), (base - top) * door_frac)
    dw = C.wmin(torch.maximum(w * D.u(0.14, 0.26), dh * 0.4))
    dx0 = x0 + 0.015 + D.u() * (w - dw - 0.03).clamp_min(0)
    has_door = present & D.coin(door_p)

    # windows: a grid on the wall above the ground floor
    m = D.u(0.012, 0.03)
    ncols = 1 + D.pick(max_cols)
    pxp = ((w - 2 * m) / ncols.float()).clamp_min(1e-3)
    ww = C.wmin(pxp * D.u(0.4, 0.68))
    fh = D.u(0.06, 0.1)
    wh = C.wmin(fh * D.u(0.45, 0.7))
    wy0 = top + D.u(0.015, 0.03)
    wy1 = base - dh - 0.02
    in_x = C.bx(x0 + m, x1 - m) * _u8(torch.remainder(C.xs - (x0 + m + (pxp - ww) / 2).view(-1, 1, 1),
                                                   pxp.view(-1, 1, 1)) < ww.view(-1, 1, 1))
    # whole window rows only: row r spans [wy0 + r*fh, wy0 + r*fh + wh) and must end by wy1
    span = wy1 - wy0
    nrows = torch.where(span >= wh, torch.floor((span - wh) / fh) + 1, torch.zeros_like(span))
    in_y = C.by(wy0, wy0 + nrows * fh) * _u8(torch.remainder(C.ys - wy0.view(-1, 1, 1), fh.view(-1, 1, 1))
                                          < wh.view(-1, 1, 1))
    lit = (tod == 2) & D.coin(0.7)
    glass = _select(lit.long(), [
        _color(D, [((0.52, 0.66), (0.25, 0.6), (0.2, 0.5)), ((0.55, 0.62), (0.1, 0.3), (0.6, 0.85))]),
        _hsv(D.u(0.1, 0.16), D.u(0.45, 0.8), D.u(0.8, 1.0))])
    k = C.slot("window/" + tag, glass, noise=0.05, emissive=lit)
    C.paint(k, in_y * in_x, present & D.coin(0.92))

    door_c = _color(D, [((0.04, 0.1), (0.5, 0.8), (0.2, 0.45)),     # wood
                        ((0.0, 1.0), (0.35, 0.75), (0.2, 0.5))])   # painted
    k = C.slot("door/" + tag, door_c, noise=0.06, vlines=0.1)
    C.paint(k, C.rect(dx0, dx0 + dw, base - dh, base), has_door)

    roof_c = _color(D, [((0.98, 1.04), (0.5, 0.8), (0.3, 0.55)),
                        ((0.05, 0.1), (0.4, 0.7), (0.2, 0.4)),
                        ((0.55, 0.7), (0.1, 0.35), (0.2, 0.45)),
                        ((0.0, 1.0), (0.0, 0.1), (0.15, 0.35))])
    gable = D.coin(0.6)
    over = D.u(0.005, 0.025)
    rh = torch.minimum(D.u(0.05, 0.12), top - 0.01).clamp_min(0.012)
    k = C.slot("roof/" + tag, roof_c, noise=0.08, hlines=0.16)
    cx = (x0 + x1) / 2
    tri = C.trapezoid(cx, top - rh, top, torch.zeros_like(cx), w / 2 + over)
    flat = C.rect(x0 - over, x1 + over, top - rh * 0.35, top)
    C.paint(k, tri, present & gable)
    C.paint(k, flat, present & ~gable)


# ----------------------------------------------------------------------------- scenes

def _town(C: _Canvas, D: _Draw):
    n = C.n
    tod = _time_of_day(D)
    C.light = torch.where((tod == 2).view(-1, 1), torch.tensor([0.45, 0.48, 0.62], device="cpu"),
                          torch.where((tod == 1).view(-1, 1), torch.tensor([1.0, 0.82, 0.7], device="cpu"),
                                      torch.ones(3, device="cpu"))) * D.u(0.85, 1.1).view(-1, 1)
    horizon = D.u(0.3, 0.48)
    _sky(C, D, horizon, tod)
    _mountains(C, D, horizon, 0.55)
    k = C.slot("grass", _grass_color(D), noise=0.3)
    C.paint(k, C.rows(C.ys >= horizon.view(-1, 1, 1)))

    base = horizon + D.u(0.12, 0.2)             # common ground line of the buildings
    road_top = (base + D.u(0.1, 0.2)).clamp(max=0.9)
    road_c = _color(D, [((0.0, 1.0), (0.0, 0.12), (0.18, 0.45)), ((0.05, 0.1), (0.15, 0.3), (0.3, 0.5))])
    k = C.slot("road", road_c, noise=0.12)
    C.paint(k, C.rows(C.ys >= road_top.view(-1, 1, 1)))
    mid = (road_top + 1.0) / 2
    k = C.slot("road/marks", _hsv(D.u(0.1, 0.16), D.u(0.0, 0.7), D.u(0.75, 0.95)), noise=0.05)
    period = D.u(0.08, 0.14)
    dash = (torch.remainder(C.xs - D.u(0, 0.1).view(-1, 1, 1), period.view(-1, 1, 1))
            < (0.55 * period).view(-1, 1, 1))
    C.paint(k, C.by(mid - 0.008, mid + 0.008) * _u8(dash), D.coin(0.5))

    # buildings, back to front, sharing the ground line
    for j in range(3):
        present = D.coin([1.0, 0.75, 0.5][j])
        w = D.u(0.18, 0.38)
        x0 = D.u(-0.05, 1.0) * (1.0 - w + 0.05) - 0.02
        h = D.u(0.14, 1.0) * ((base - 0.13).clamp(max=0.42) - 0.14) + 0.14
        _building(C, D, present, x0, x0 + w, base, base - h, tod, tag=str(j))

    # fence on the grass strip
    fb = base + D.u(0.01, 1.0) * (road_top - base - 0.012)
    fhgt = D.u(0.035, 0.065)
    fx0 = D.u(-0.2, 0.6)
    fx1 = fx0 + D.u(0.25, 0.7)
    fper = D.u(0.025, 0.045)
    pick = torch.remainder(C.xs, fper.view(-1, 1, 1)) < C.wmin(fper * D.u(0.4, 0.6)).view(-1, 1, 1)
    rails = torch.maximum(C.by(fb - fhgt * 0.8, fb - fhgt * 0.65), C.by(fb - fhgt * 0.35, fb - fhgt * 0.2))
    fence_c = _color(D, [((0.0, 1.0), (0.0, 0.08), (0.8, 0.97)), ((0.05, 0.1), (0.35, 0.6), (0.3, 0.55))])
    k = C.slot("fence", fence_c, noise=0.08)
    has_fence = D.coin(0.35)
    C.paint(k, C.by(fb - fhgt, fb) * (C.bx(fx0, fx1) * _u8(pick)), has_fence)
    C.paint(k, rails * C.bx(fx0, fx1), has_fence)

    # trees and bushes stand on the grass strip in front of the buildings
    for j in range(3):
        present = D.coin([0.6, 0.45, 0.3][j])
        tb = base + D.u(0.01, 1.0) * (road_top - base - 0.01)
        _tree(C, D, present, D.u(0.0, 1.0), tb, D.u(0.9, 1.4), tag=str(j))
    for j in range(2):
        present = D.coin([0.5, 0.3][j])
        bb = base + D.u(0.02, 1.0) * (road_top - base - 0.02)
        rx, ry = D.u(0.04, 0.08), D.u(0.025, 0.045)
        k = C.slot("bush/" + str(j), _foliage_color(D), noise=0.28)
        C.paint(k, C.ellipse(D.u(0, 1), bb, rx, ry) * C.rows(C.ys < bb.view(-1, 1, 1)), present)

    # street lamps at the road edge
    for j in range(2):
        present = D.coin([0.45, 0.25][j])
        lx = D.u(0.03, 0.97)
        lb = road_top - 0.003
        lh = D.u(0.16, 0.28)
        pw = C.wmin(torch.full((n,), 0.018, device="cpu"))
        pole_c = _color(D, [((0.0, 1.0), (0.0, 0.15), (0.08, 0.3)), ((0.3, 0.45), (0.4, 0.6), (0.15, 0.3))])
        k = C.slot("lamp/pole" + str(j), pole_c, noise=0.04)
        C.paint(k, C.rect(lx - pw / 2, lx + pw / 2, lb - lh, lb), present)
        glow = tod == 2
        head_c = _select(glow.long(), [_hsv(D.u(0.1, 0.16), D.u(0.0, 0.3), D.u(0.6, 0.9)),
                                       _hsv(D.u(0.1, 0.15), D.u(0.4, 0.7), D.u(0.95, 1.0))])
        k = C.slot("lamp/head" + str(j), head_c, noise=0.03, emissive=glow)
        C.paint(k, C.ellipse(lx, lb - lh, D.u(0.018, 0.028), D.u(0.013, 0.02)), present)


def _room(C: _Canvas, D: _Draw):
    n = C.n
    mood = D.pick(3)  # warm, cool, evening
    C.light = _select(mood, [torch.tensor([1.0, 0.93, 0.82], device="cpu").expand(n, 3),
                             torch.tensor([0.9, 0.96, 1.0], device="cpu").expand(n, 3),
                             torch.tensor([0.62, 0.55, 0.5], device="cpu").expand(n, 3)]) * D.u(0.85, 1.1).view(-1, 1)
    bx0, bx1 = D.u(0.07, 0.2), D.u(0.8, 0.93)
    cy, fy = D.u(0.1, 0.2), D.u(0.62, 0.74)
    bw = bx1 - bx0
    wall_c = _color(D, [((0.0, 1.0), (0.05, 0.3), (0.6, 0.92)), ((0.05, 0.15), (0.3, 0.5), (0.55, 0.8)),
                        ((0.3, 0.65), (0.15, 0.4), (0.45, 0.75))])
    stripes = D.coin(0.3).float() * 0.07
    k = C.slot("wall/side", wall_c * D.u(0.7, 0.88).view(-1, 1), noise=0.05, vlines=stripes)
    C.paint(k, None)
    k = C.slot("wall/back", wall_c, noise=0.05, vlines=stripes)
    C.paint(k, C.rect(bx0, bx1, cy, fy))
    xs = C.xs
    ceil_y = cy.view(-1, 1, 1) * torch.minimum(torch.minimum(xs / bx0.view(-1, 1, 1),
                                                             (1 - xs) / (1 - bx1).view(-1, 1, 1)),
                                               torch.ones(1, device="cpu"))
    k = C.slot("ceiling", _hsv(D.u(0, 1), D.u(0.0, 0.12), D.u(0.75, 0.97)), noise=0.03)
    C.paint(k, _u8(C.ys < ceil_y))
    floor_y = fy.view(-1, 1, 1) + (1 - fy).view(-1, 1, 1) * torch.maximum(
        torch.maximum((bx0.view(-1, 1, 1) - xs) / bx0.view(-1, 1, 1),
                      (xs - bx1.view(-1, 1, 1)) / (1 - bx1).view(-1, 1, 1)), torch.zeros(1, device="cpu"))
    floor_c = _color(D, [((0.05, 0.1), (0.4, 0.7), (0.3, 0.62)),    # wood
                         ((0.0, 1.0), (0.0, 0.12), (0.35, 0.8)),    # tile / concrete
                         ((0.0, 1.0), (0.3, 0.6), (0.25, 0.5))])   # carpet
    k = C.slot("floor", floor_c, noise=0.1, hlines=D.coin(0.6).float() * 0.14)
    floor_m = _u8(C.ys >= floor_y)
    C.paint(k, floor_m)

    def on_floor(u, w, base):
        """Centre x for an object of width w whose base row lies on the floor (+ fits flag)."""
        t = ((base - fy) / (1 - fy)).clamp(0, 1)
        xl, xr = bx0 * (1 - t) + 0.012, bx1 + (1 - bx1) * t - 0.012
        return xl + w / 2 + u * (xr - xl - w).clamp_min(0), (xr - xl) >= w

    # back wall columns: window | painting | door, window side random
    left = D.coin(0.5)
    colw = bw * 0.34
    win_x0 = torch.where(left, bx0 + 0.02, bx1 - colw)
    door_x0 = torch.where(left, bx1 - colw, bx0 + 0.02)
    # window showing the sky outside, with frame and cross bars
    outside = D.pick(3)
    has_win = D.coin(0.85)
    ww = D.u(0.5, 0.8) * (colw - 0.07) + 0.03
    wx0 = win_x0 + 0.03 + D.u() * (colw - ww - 0.06).clamp_min(0)
    wy0 = cy + D.u(0.04, 0.09)
    wh = torch.minimum(D.u(0.15, 0.26), fy - 0.14 - wy0)
    glass = _select(outside, [_hsv(D.u(0.55, 0.62), D.u(0.3, 0.6), D.u(0.8, 1.0)),
                              _hsv(D.u(0.0, 0.1), D.u(0.4, 0.7), D.u(0.85, 1.0)),
                              _hsv(D.u(0.6, 0.7), D.u(0.5, 0.8), D.u(0.08, 0.2))])
    k = C.slot("window/glass", glass, grad=torch.zeros(n, 3, device="cpu") - 0.15, noise=0.03,
               emissive=outside < 2)
    C.paint(k, C.rect(wx0, wx0 + ww, wy0, wy0 + wh), has_win)
    fw = C.wmin(D.u(0.008, 0.016) * torch.ones(n, device="cpu"))
    outer = C.rect(wx0, wx0 + ww, wy0, wy0 + wh)
    inner = C.rect(wx0 + fw, wx0 + ww - fw, wy0 + fw, wy0 + wh - fw)
    cross = torch.maximum(C.bx(wx0 + ww / 2 - fw / 2, wx0 + ww / 2 + fw / 2),
                          C.by(wy0 + wh / 2 - fw / 2, wy0 + wh / 2 + fw / 2))
    frame_c = _color(D, [((0.0, 1.0), (0.0, 0.08), (0.8, 0.97)), ((0.05, 0.1), (0.4, 0.7), (0.25, 0.5))])
    k = C.slot("window/frame", frame_c, noise=0.04)
    C.paint(k, outer * torch.maximum(1 - inner, cross), has_win)
    # curtains hang beside the window, on the wall
    cwid = D.u(0.025, 0.045)
    cbot = torch.minimum(wy0 + wh + D.u(0.02, 0.12), fy - 0.02)
    curt_c = _color(D, [((0.0, 1.0), (0.4, 0.8), (0.35, 0.8)), ((0.0, 1.0), (0.0, 0.15), (0.7, 0.95))])
    k = C.slot("curtain", curt_c, noise=0.06, vlines=0.2)
    cmask = torch.maximum(C.rect(wx0 - cwid * 0.6, wx0 + cwid * 0.5, wy0 - 0.02, cbot),
                          C.rect(wx0 + ww - cwid * 0.5, wx0 + ww + cwid * 0.6, wy0 - 0.02, cbot))
    C.paint(k, cmask, has_win & D.coin(0.6))

    # door at the floor line
    dw = D.u(0.1, 0.15).clamp(max=colw - 0.04)
    dh = torch.minimum(D.u(0.25, 0.36), fy - cy - 0.05)
    dx = door_x0 + 0.01 + D.u() * (colw - dw - 0.03).clamp_min(0)
    door_c = _color(D, [((0.04, 0.1), (0.5, 0.8), (0.25, 0.5)), ((0.0, 1.0), (0.0, 0.1), (0.7, 0.95)),
                        ((0.0, 1.0), (0.3, 0.7), (0.25, 0.55))])
    k = C.slot("door", door_c, noise=0.05, vlines=0.08)
    C.paint(k, C.rect(dx, dx + dw, fy - dh, fy), D.coin(0.75))

    # painting in the middle column
    pw, ph = D.u(0.08, 0.18).clamp(max=bw * 0.28), D.u(0.07, 0.14)
    pxc = bx0 + bw * 0.5 + D.u(-0.03, 0.03)
    py0 = cy + D.u(0.04, 0.12)
    k = C.slot("painting/frame", _color(D, [((0.08, 0.14), (0.5, 0.8), (0.4, 0.75)),
                                                        ((0.0, 1.0), (0.0, 0.1), (0.05, 0.3))]), noise=0.05)
    has_p = D.coin(0.7)
    C.paint(k, C.rect(pxc - pw / 2, pxc + pw / 2, py0, py0 + ph), has_p)
    fpw = C.wmin(torch.full((n,), 0.01, device="cpu"))
    k = C.slot("painting/canvas", _hsv(D.u(0, 1), D.u(0.2, 0.9), D.u(0.3, 0.95)), noise=0.6,
               grad=torch.stack([D.u(-1, 1), D.u(-1, 1), D.u(-1, 1)], 1))
    C.paint(k, C.rect(pxc - pw / 2 + fpw, pxc + pw / 2 - fpw, py0 + fpw, py0 + ph - fpw), has_p)

    # rug on the floor
    ry0 = fy + D.u(0.08, 0.2)
    k = C.slot("rug", _color(D, [((0.0, 1.0), (0.4, 0.85), (0.3, 0.75)), ((0.05, 0.12), (0.2, 0.5), (0.5, 0.8))]),
               noise=0.15, vlines=D.coin(0.5).float() * 0.2)
    rug_rect = D.coin(0.5)
    rcx, rrx, rry = D.u(0.3, 0.7), D.u(0.14, 0.3), D.u(0.04, 0.08)
    has_rug = D.coin(0.6)
    C.paint(k, C.rect(rcx - rrx, rcx + rrx, ry0 - rry, ry0 + rry) * floor_m, has_rug & rug_rect)
    C.paint(k, C.ellipse(rcx, ry0, rrx, rry) * floor_m, has_rug & ~rug_rect)

    # bed: headboard, sheet, pillows, front face
    has_bed = D.coin(0.5)
    bw_, bbase = D.u(0.32, 0.5), (fy + D.u(0.1, 0.3)).clamp(max=0.98)
    bh = D.u(0.2, 0.3)
    bxc, fits = on_floor(D.u(), bw_, bbase)
    has_bed = has_bed & fits
    btop = bbase - bh
    wood = _color(D, [((0.04, 0.1), (0.4, 0.75), (0.2, 0.5)), ((0.0, 1.0), (0.0, 0.1), (0.75, 0.95)),
                      ((0.0, 1.0), (0.0, 0.15), (0.08, 0.25))])
    k = C.slot("bed/frame", wood, noise=0.06)
    C.paint(k, C.rect(bxc - bw_ / 2, bxc + bw_ / 2, btop, btop + bh * 0.3), has_bed)
    C.paint(k, C.rect(bxc - bw_ / 2, bxc + bw_ / 2, bbase - bh * 0.22, bbase), has_bed)
    k = C.slot("bed/sheet", _color(D, [((0.0, 1.0), (0.0, 0.15), (0.8, 0.97)), ((0.0, 1.0), (0.3, 0.7), (0.4, 0.85))]),
               noise=0.1, hlines=D.coin(0.3).float() * 0.1)
    C.paint(k, C.rect(bxc - bw_ / 2, bxc + bw_ / 2, btop + bh * 0.3, bbase - bh * 0.22), has_bed)
    k = C.slot("bed/pillow", _hsv(D.u(0, 1), D.u(0.0, 0.25), D.u(0.85, 1.0)), noise=0.04)
    C.paint(k, torch.maximum(C.ellipse(bxc - bw_ * 0.22, btop + bh * 0.36, bw_ * 0.17, bh * 0.09),
                             C.ellipse(bxc + bw_ * 0.22, btop + bh * 0.36, bw_ * 0.17, bh * 0.09)), has_bed)

    # sofa: backrest, seat and arms
    has_sofa = D.coin(0.6)
    sw, sbase, sh = D.u(0.28, 0.46), (fy + D.u(0.06, 0.26)).clamp(max=0.98), D.u(0.14, 0.22)
    sxc, fits = on_floor(D.u(), sw, sbase)
    has_sofa = has_sofa & fits
    stop = sbase - sh
    sofa_c = _color(D, [((0.0, 1.0), (0.3, 0.75), (0.25, 0.7)), ((0.05, 0.1), (0.3, 0.6), (0.2, 0.45)),
                        ((0.0, 1.0), (0.0, 0.12), (0.3, 0.9))])
    aw = D.u(0.025, 0.045)
    k = C.slot("sofa/back", sofa_c * 0.85, noise=0.07)
    C.paint(k, C.rect(sxc - sw / 2 + aw, sxc + sw / 2 - aw, stop, stop + sh * 0.55), has_sofa)
    k = C.slot("sofa/seat", sofa_c, noise=0.07)
    C.paint(k, C.rect(sxc - sw / 2 + aw, sxc + sw / 2 - aw, stop + sh * 0.55, sbase), has_sofa)
    arms = torch.maximum(C.bx(sxc - sw / 2, sxc - sw / 2 + aw), C.bx(sxc + sw / 2 - aw, sxc + sw / 2))
    C.paint(k, C.by(stop + sh * 0.3, sbase) * arms, has_sofa)

    # table: top and two legs
    tw, tbase, th = D.u(0.16, 0.3), (fy + D.u(0.05, 0.3)).clamp(max=0.99), D.u(0.09, 0.16)
    txc, table_fits = on_floor(D.u(), tw, tbase)
    lw = C.wmin(D.u(0.018, 0.026))
    tt = C.wmin(D.u(0.026, 0.045))
    table_c = _color(D, [((0.04, 0.1), (0.4, 0.75), (0.2, 0.55)), ((0.0, 1.0), (0.0, 0.1), (0.1, 0.95))])
    legs = torch.maximum(C.bx(txc - tw / 2 + 0.01, txc - tw / 2 + 0.01 + lw),
                         C.bx(txc + tw / 2 - 0.01 - lw, txc + tw / 2 - 0.01))
    has_table = D.coin(0.6) & table_fits
    k = C.slot("table/legs", table_c * 0.9, noise=0.06)
    C.paint(k, C.by(tbase - th, tbase) * legs, has_table)
    k = C.slot("table/top", table_c, noise=0.06)
    C.paint(k, C.rect(txc - tw / 2, txc + tw / 2, tbase - th, tbase - th + tt), has_table)

    # plant in a pot
    pbase = (fy + D.u(0.03, 0.25)).clamp(max=0.99)
    ppw, pph, pr = D.u(0.02, 0.035), D.u(0.04, 0.07), D.u(0.035, 0.07)
    pxc2, fits = on_floor(D.u(), 2 * ppw, pbase)
    has_plant = D.coin(0.55) & fits
    k = C.slot("plant/pot", _color(D, [((0.02, 0.08), (0.5, 0.8), (0.35, 0.65)),
                                       ((0.0, 1.0), (0.0, 0.15), (0.2, 0.95))]),
               noise=0.05)
    C.paint(k, C.trapezoid(pxc2, pbase - pph, pbase, ppw, ppw * 0.75), has_plant)
    k = C.slot("plant/leaves", _foliage_color(D), noise=0.3)
    C.paint(k, C.ellipse(pxc2, pbase - pph - pr * 0.9, pr, pr * 1.25), has_plant)

    # floor lamp: pole and shade
    lb, lh = (fy + D.u(0.02, 0.2)).clamp(max=0.99), D.u(0.25, 0.4)
    pw = C.wmin(torch.full((n,), 0.016, device="cpu"))
    lx, fits = on_floor(D.u(), pw, lb)
    has_lamp = D.coin(0.5) & fits
    k = C.slot("lamp/pole", _hsv(D.u(0, 1), D.u(0, 0.2), D.u(0.05, 0.45)), noise=0.03)
    C.paint(k, C.rect(lx - pw / 2, lx + pw / 2, lb - lh, lb), has_lamp)
    shade_c = _color(D, [((0.1, 0.16), (0.1, 0.5), (0.8, 1.0)), ((0.0, 1.0), (0.3, 0.7), (0.5, 0.9))])
    k = C.slot("lamp/shade", shade_c, noise=0.03, emissive=mood == 2)
    shh = D.u(0.05, 0.08)
    C.paint(k, C.trapezoid(lx, lb - lh - shh * 0.3, lb - lh + shh * 0.7, D.u(0.015, 0.03), D.u(0.035, 0.055)),
            has_lamp)


def _lake(C: _Canvas, D: _Draw):
    n = C.n
    tod = _time_of_day(D)
    C.light = torch.where((tod == 2).view(-1, 1), torch.tensor([0.45, 0.48, 0.62], device="cpu"),
                          torch.where((tod == 1).view(-1, 1), torch.tensor([1.0, 0.82, 0.7], device="cpu"),
                                      torch.ones(3, device="cpu"))) * D.u(0.85, 1.1).view(-1, 1)
    horizon = D.u(0.3, 0.5)
    _sky(C, D, horizon, tod)
    _mountains(C, D, horizon, 0.85)
    water_c = _color(D, [((0.5, 0.62), (0.4, 0.8), (0.3, 0.6)), ((0.42, 0.5), (0.3, 0.6), (0.25, 0.5)),
                         ((0.58, 0.66), (0.2, 0.5), (0.2, 0.45))])
    k = C.slot("water", water_c, grad=torch.stack([D.u(-0.2, 0.1)] * 3, 1), noise=0.08, ripple=0.1)
    C.paint(k, C.rows(C.ys >= horizon.view(-1, 1, 1)))

    # shore: grass below a sloped, wavy line; a[.] bounds the wave so objects can be placed
    smin = horizon + 0.24 + D.u() * (0.88 - horizon - 0.24).clamp_min(0.02)
    smax = smin + D.u(0.0, 0.35)
    left_low = D.coin(0.5)       # which side the shore rises on
    s0 = torch.where(left_low, smin, smax)
    s1 = torch.where(left_low, smax, smin)
    amp, freq, phase = D.u(0.0, 0.02), D.u(1.0, 3.0), D.u(0, 6.3)

    def line(x):
        return s0 + (s1 - s0) * x

    curve = (s0.view(-1, 1, 1) + (s1 - s0).view(-1, 1, 1) * C.xs
             + amp.view(-1, 1, 1) * torch.sin(2 * math.pi * freq.view(-1, 1, 1) * C.xs + phase.view(-1, 1, 1)))
    k = C.slot("grass", _grass_color(D), noise=0.3)
    C.paint(k, C.below(curve))

    # boats on open water, perspective-scaled, back to front
    for j in range(2):
        present = D.coin([0.7, 0.4][j])
        cx = D.u(0.08, 0.92)
        scale = D.u(0.6, 1.0)
        hw = D.u(0.07, 0.13) * scale
        lo = horizon + 0.06
        hi = torch.minimum(line(cx - hw), line(cx + hw)) - amp - 0.012
        ybot = lo + D.u() * (hi - lo).clamp_min(0)
        persp = 0.5 + (ybot - horizon) / (1 - horizon)
        hw = C.wmin(hw * persp)
        hh = C.wmin(D.u(0.025, 0.045) * persp)
        ok = present & (hi > lo)
        hull_c = _color(D, [((0.0, 1.0), (0.0, 0.1), (0.8, 0.97)), ((0.95, 1.02), (0.6, 0.9), (0.5, 0.8)),
                            ((0.55, 0.65), (0.5, 0.9), (0.3, 0.6)), ((0.05, 0.1), (0.5, 0.8), (0.25, 0.5))])
        k = C.slot("boat/hull" + str(j), hull_c, noise=0.05)
        C.paint(k, C.trapezoid(cx, ybot - hh, ybot, hw, hw * 0.7), ok)
        sh = D.u(0.07, 0.15) * persp
        sw = hw * D.u(0.6, 0.9)
        mw = C.wmin(torch.full((n,), 0.006, device="cpu"))
        stop = (ybot - hh - sh).clamp_min(0.01)
        side = torch.where(D.coin(0.5), 1.0, -1.0)
        t = ((C.ys - stop.view(-1, 1, 1)) / (ybot - hh - stop).clamp_min(1e-4).view(-1, 1, 1))
        c = cx.view(-1, 1, 1)
        reach = sw.view(-1, 1, 1) * t
        right = side.view(-1, 1, 1) > 0
        sail = C.span(torch.where(right, c, c - reach), torch.where(right, c + reach, c), (t >= 0) & (t < 1))
        mast = C.rect(cx - mw / 2, cx + mw / 2, stop, ybot - hh)
        sail_c = _color(D, [((0.1, 0.15), (0.0, 0.2), (0.85, 1.0)), ((0.0, 1.0), (0.5, 0.85), (0.55, 0.9))])
        k = C.slot("boat/sail" + str(j), sail_c, noise=0.04)
        C.paint(k, torch.maximum(sail, mast), ok & D.coin(0.6))

    # a house and trees standing on the shore
    hx_w = D.u(0.14, 0.26)
    hx0 = torch.where(left_low, D.u(0.55, 0.98), D.u(0.02, 0.45)) * (1 - hx_w)
    # the side where the shore is higher up in the image has more room
    hbase = torch.maximum(line(hx0), line(hx0 + hx_w)) + amp + D.u(0.02, 0.06)
    hh_ = D.u(0.13, 0.22)
    house_ok = D.coin(0.55) & (hbase < 0.97) & (hbase - hh_ > horizon - 0.15)
    _building(C, D, house_ok, hx0, hx0 + hx_w, hbase, hbase - hh_, tod, tag="0", door_p=0.85, max_cols=2,
              door_frac=0.4)
    for j in range(3):
        present = D.coin([0.7, 0.5, 0.35][j])
        tx = D.u(0.03, 0.97)
        tw_pad = 0.03
        gmax = torch.maximum(line(tx - tw_pad), line(tx + tw_pad)) + amp
        tb = gmax + 0.01 + D.u() * (0.99 - gmax - 0.01).clamp_min(0)
        _tree(C, D, present & (gmax < 0.97), tx, tb, 0.7 + 0.8 * (tb - horizon), tag=str(j))


_BUILDERS = {"town": _town, "room": _room, "lake": _lake}


def _check(scene: str, n, size):
    if scene not in _BUILDERS:
        raise InputError(f"unknown scene {scene!r}; toyworld scenes are: {', '.join(SCENES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"n must be a positive integer number of scenes, got {n!r}")
    if size not in SIZES:
        raise InputError(f"unsupported size {size!r}; toyworld renders sizes {', '.join(map(str, SIZES))}")


def render(scene: str, n: int, seed: int = 0, size: int = 128, return_layers: bool = False,
           start: int = 0, omit=()):
    """Render ``n`` scenes of type ``scene``.

    Returns ``(images, labels)`` — images float32 [n, 3, size, size] in [-1, 1], labels int64
    [n, size, size] indexing :data:`LABELS` — or ``(images, labels, layers)`` with
    ``return_layers=True``: ``layers`` maps each painted layer's name (``"door0"``,
    ``"building0"``, ``"wall_back"``, ``"grass"``, ...) to its *amodal* bool mask [n, H, W]
    (the shape before anything in front occluded it).

    Scene ``i`` of a seed is identical however many scenes are rendered; ``start`` skips the
    first scenes (``render(s, 5, seed, start=10)`` = scenes 10..14 of that seed).

    ``omit``: concepts never painted (a world without them: ``omit=("cloud",)`` gives the same scenes with
    the sky where the clouds were; every random draw is made as before, so scene ``i`` is otherwise the same).
    Parts of an omitted concept still draw (omitting ``building`` leaves its windows and doors).
    """
    _check(scene, n, size)
    omit = _check_omit(omit)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InputError(f"start must be a non-negative integer, got {start!r}")
    g = torch.Generator().manual_seed(int(seed))
    if start:
        # the generator's stream is consumed row by row; skip rows in bounded chunks
        left = start
        while left > 0:
            m = min(left, 4096)
            torch.rand(m, _NCOLS, generator=g, device="cpu")
            left -= m
    with torch.no_grad():                         # every tensor here names the CPU: whatever the default device
        return _render_all(scene, n, size, return_layers, g, omit)


def _check_omit(omit) -> frozenset:
    if isinstance(omit, str):
        omit = (omit,)
    try:
        names = list(omit)
    except TypeError:
        raise InputError(f"omit must be a list of concept names, got {type(omit).__name__}") from None
    bad = [o for o in names if not isinstance(o, str) or o not in _LID or o == "-"]
    if bad:
        raise InputError(f"omit: unknown concepts {bad!r:.80}; toyworld's concepts are: {', '.join(LABELS[1:])}")
    return frozenset(_LID[o] for o in names)


def _render_all(scene: str, n: int, size: int, return_layers: bool, g: torch.Generator, omit: frozenset = frozenset()):
    chunk = max(1, (1 << 22) // (size * size))
    imgs, labs, lays = [], [], {}
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        u = torch.rand(m, _NCOLS, generator=g, device="cpu")
        im, lb, ly = _render_chunk(scene, u, size, return_layers, omit)
        imgs.append(im)
        labs.append(lb)
        for k, v in ly.items():
            lays.setdefault(k, []).append(v)
    images = torch.cat(imgs) if len(imgs) > 1 else imgs[0]
    labels = torch.cat(labs) if len(labs) > 1 else labs[0]
    if return_layers:
        return images, labels, {k: torch.cat(v).bool() for k, v in lays.items()}
    return images, labels


def _render_chunk(scene: str, u: torch.Tensor, size: int, record: bool, omit: frozenset = frozenset()):
    D = _Draw(u)
    n = u.shape[0]
    C = _Canvas(n, size, record, omit)
    # texture parameters first, so every scene type uses the same columns for them
    tile_off = ((D.u() * size).long().clamp_(max=size - 1), (D.u() * size).long().clamp_(max=size - 1))
    hper, vper, rfreq = D.u(0.02, 0.045), D.u(0.02, 0.05), D.u(25.0, 45.0)
    _BUILDERS[scene](C, D)
    images, labels = C.finish(tile_off, hper, vper, rfreq)
    return images, labels, C.layers
