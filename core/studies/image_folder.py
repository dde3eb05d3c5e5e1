"""A folder of the user's own images (PNG / JPEG) as images for the measurements: the real side of
the omission statistics (:func:`core.engine.omissions.omissions`) for a model whose real data is not
toyworld, and the images ``ganatomy invert --images`` reconstructs.

Everything a folder can get wrong is refused with an :class:`~core.base.errors.InputError` naming the
argument (``arg``, e.g. ``--real-dir``), the file and the fix, before any model computes: a missing
folder, a file instead of a folder, no images, fewer images than asked for, a file that is not a
readable image, an image of another size (``resize=True``: centre-cropped to a square and resized) or
another mode than 8-bit RGB (``convert=True``: converted by PIL), an image over
:data:`MAX_IMAGE_PIXELS` (a decompression bomb: refused from its header, before it is decoded). Files
are listed sorted by name (not recursive; hidden files and other suffixes skipped), so the order and
the draws are the same on every machine.

As a real-image source (``name``, ``batch(seed, start, stop)``, ``check_draw``) the folder has no exact
labels, and it is split once into two disjoint halves by a permutation seeded by ``seed`` (the
omissions' ``real_seed``): ``batch(seed, ...)`` draws from the first half, ``batch(floor_seed, ...)``
(stream ``omissions.floor`` of ``seed``) from the second: the real-vs-real floor compares two
disjoint sets of the user's images, as two toyworld seeds do.

    real = ImageFolder("photos/", 64)
    res = omissions(G, seg, real, n_samples=500)      # needs 1000 images: 500 real + 500 for the floor
    images = real.load(range(8))                      # 8 x 3 x 64 x 64 in [-1, 1], files in sorted order
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.base.errors import InputError
from core.base.sampling import OMISSIONS_REAL_SEED, stream_seed
from core.base.validate import check_int

__all__ = ["ImageFolder", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "CONVERTIBLE_MODES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGE_PIXELS = 4096 * 4096          # larger images are refused from their header, never decoded
CONVERTIBLE_MODES = ("L", "LA", "RGBA", "RGBa", "P", "PA", "1", "CMYK", "YCbCr", "La")   # 8-bit: PIL converts them


def _image_module():
    from PIL import Image  # Pillow is a requirement; imported here to keep `import core` light
    return Image


def _shown(name: str) -> str:
    """A file name as a message shows it: printable, at most 80 characters."""
    return ascii(name)[1:-1][:80]


class ImageFolder:
    """The PNG / JPEG files of ``folder`` as float images N x 3 x ``size`` x ``size`` in [-1, 1] (8-bit
    values v -> v / 127.5 - 1, as :func:`core.outputs.visualize.to_uint8` writes them). Every file's
    header is read and checked here (size, mode, pixel count), nothing decoded; :meth:`check_draw` /
    :meth:`check_count` decode the images a measurement will use before it starts. ``arg``: the
    argument the messages name (``"--real-dir"`` on the command line). ``seed``: the split into the
    real half and the floor's half (see the module's docstring)."""

    labels = None          # no exact labels: the omission statistics skip the segmenter-vs-exact comparison

    def __init__(self, folder, size: int, *, resize: bool = False, convert: bool = False,
                 seed: int = OMISSIONS_REAL_SEED, arg: str = "folder"):
        self.arg = str(arg)
        self.size = check_int("size", size, 8, 4096, what="an image side in pixels (8 .. 4096)")
        self.seed = check_int("seed", seed)
        self.resize, self.convert = bool(resize), bool(convert)
        if folder is None or not str(folder).strip():
            raise InputError(f"{self.arg}: no folder given", fix=f"give {self.arg} a folder of PNG or JPEG images")
        self.folder = Path(folder).expanduser()
        if not self.folder.exists():
            raise InputError(f"{self.arg}: the folder {_shown(str(folder))} does not exist",
                             fix=f"give {self.arg} an existing folder of PNG or JPEG images")
        if not self.folder.is_dir():
            raise InputError(f"{self.arg}: {_shown(str(folder))} is a file, not a folder",
                             fix=f"give {self.arg} the folder that holds the images")
        try:
            entries = sorted(p for p in self.folder.iterdir() if not p.name.startswith("."))
        except OSError as e:
            raise InputError(f"{self.arg}: the folder {_shown(str(folder))} cannot be read ({e.strerror or e})",
                             fix=f"give {self.arg} a folder you can read") from None
        self.files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not self.files:
            others = len([p for p in entries if p.is_file()])
            raise InputError(f"{self.arg}: the folder {_shown(str(folder))} has no images (no "
                             f"{' / '.join(IMAGE_SUFFIXES)} files"
                             + (f"; {others} other file{'s' * (others != 1)})" if others else ")"),
                             fix=f"give {self.arg} a folder of PNG or JPEG images")
        digest = hashlib.sha256()
        self.modes: list[str] = []
        for p in self.files:
            self.modes.append(self._check_header(p))
            digest.update(p.name.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(hashlib.sha256(self._read(p)).digest())
        self.fingerprint = digest.hexdigest()
        opts = "".join(f"+{k}" for k, v in (("resize", self.resize), ("convert", self.convert)) if v)
        self.name = f"folder:{_shown(self.folder.name) or 'folder'}@{self.fingerprint[:16]}/{self.size}px{opts}"

    # ------------------------------------------------------------------ files

    def __len__(self) -> int:
        return len(self.files)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def _read(self, p: Path) -> bytes:
        try:
            return p.read_bytes()
        except OSError as e:
            raise InputError(f"{self.arg}: the file {_shown(p.name)} cannot be read ({e.strerror or e})",
                             fix=f"make it readable or remove it from {self.arg}") from None

    def _open(self, p: Path):
        """The file opened by PIL (header only), a decompression bomb refused before any decoding."""
        Image = _image_module()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(p)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise InputError(f"{self.arg}: {_shown(p.name)} declares more pixels than PIL opens safely "
                                 "(a decompression bomb?)", fix=f"remove it from {self.arg}") from None
            except (OSError, SyntaxError, ValueError) as e:     # UnidentifiedImageError is an OSError
                raise InputError(f"{self.arg}: {_shown(p.name)} is not a readable PNG or JPEG image "
                                 f"({type(e).__name__})", fix=f"remove it from {self.arg} or save it again as PNG"
                                 ) from None
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            im.close()
            raise InputError(f"{self.arg}: {_shown(p.name)} is {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                             "a folder image may have (refused before decoding it)",
                             fix=f"shrink it to {self.size} x {self.size} or remove it from {self.arg}")
        return im

    def _check_header(self, p: Path) -> str:
        im = self._open(p)
        try:
            fmt, mode, (w, h) = im.format, im.mode, im.size
        finally:
            im.close()
        if fmt not in ("PNG", "JPEG", "MPO"):
            raise InputError(f"{self.arg}: {_shown(p.name)} is a {fmt} file under a PNG / JPEG name",
                             fix=f"save it as PNG or remove it from {self.arg}")
        if (w, h) != (self.size, self.size) and not self.resize:
            raise InputError(f"{self.arg}: {_shown(p.name)} is {w} x {h} pixels; the model's images are "
                             f"{self.size} x {self.size}",
                             fix=f"resize the images to {self.size} x {self.size}, or ask for a centre crop "
                                 "resized to that size (--resize / resize=True)")
        if mode != "RGB" and not (self.convert and mode in CONVERTIBLE_MODES):
            how = ("convert it to 8-bit RGB yourself (PIL cannot convert it without choices)"
                   if mode not in CONVERTIBLE_MODES else
                   "save the images as RGB, or ask for PIL's conversion to RGB (--convert / convert=True; "
                   "alpha is dropped, grey repeated to three channels)")
            raise InputError(f"{self.arg}: {_shown(p.name)} is a {mode} image, not RGB", fix=how)
        return mode

    def _decode(self, i: int) -> np.ndarray:
        """File ``i`` decoded, converted and resized as asked: uint8 [size, size, 3]."""
        Image = _image_module()
        p = self.files[i]
        im = self._open(p)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)        # palette transparency on convert
                im.load()
                if im.mode != "RGB":
                    im = (im.convert("RGBA") if im.mode in ("P", "PA") else im).convert("RGB")
                if im.size != (self.size, self.size):
                    w, h = im.size
                    s = min(w, h)
                    left, top = (w - s) // 2, (h - s) // 2
                    im = im.crop((left, top, left + s, top + s)).resize((self.size, self.size),
                                                                        Image.Resampling.LANCZOS)
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as e:      # truncated or corrupt data
            raise InputError(f"{self.arg}: {_shown(p.name)} cannot be decoded ({type(e).__name__}: a truncated or "
                             "corrupt image)", fix=f"save it again or remove it from {self.arg}") from None
        finally:
            im.close()
        if a.shape != (self.size, self.size, 3):       # a header that lied about its size or mode
            raise InputError(f"{self.arg}: {_shown(p.name)} decodes to {a.shape}, not {self.size} x {self.size} RGB",
                             fix=f"save it again or remove it from {self.arg}")
        return a

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """Files ``indices`` (positions in the sorted list) as float32 N x 3 x S x S in [-1, 1], on the CPU."""
        idx = [int(i) for i in indices]
        if not idx:
            return torch.zeros(0, 3, self.size, self.size, device="cpu")
        a = np.stack([self._decode(i) for i in idx])
        return torch.from_numpy(a).to("cpu").permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()

    def check_count(self, n: int, what: str = "images") -> int:
        """``n`` when the folder has at least ``n`` images, each of the first ``n`` decoded once (a
        truncated file is refused now, not half-way); else an error saying how many there are."""
        n = check_int("n", n, 1)
        if n > len(self):
            raise InputError(f"{self.arg}: the folder has {len(self)} image{'s' * (len(self) != 1)}; {n} {what} "
                             "asked for", fix=f"add images to {self.arg} or ask for at most {len(self)}")
        for i in range(n):
            self._decode(i)
        return n

    # ------------------------------------------------------------------ a real-image source

    @property
    def floor_seed(self) -> int:
        return stream_seed(self.seed, "omissions.floor")

    def halves(self) -> tuple[list[int], list[int]]:
        """The two disjoint halves (file positions) of the seeded permutation: the real draw's and the floor's."""
        perm = torch.randperm(len(self), generator=torch.Generator(device="cpu").manual_seed(self.seed),
                              device="cpu").tolist()
        half = len(self) // 2
        return perm[:half], perm[half:2 * half]

    def check_draw(self, n: int, real_seed: int, floor_seed: int) -> None:
        """Called by :func:`~core.engine.omissions.omissions` before any image is made: the seeds must be
        those the folder was split for, and each half must hold ``n`` images (all ``2 n`` are decoded once)."""
        if (real_seed, floor_seed) != (self.seed, self.floor_seed):
            raise InputError(f"real_seed: the folder {self.arg} was split into its real and floor halves with seed "
                             f"{self.seed}, the measurement asks for {real_seed}",
                             fix="give the folder the measurement's real_seed: ImageFolder(..., seed=real_seed)")
        n = check_int("n_samples", n, 1)
        if 2 * n > len(self):
            raise InputError(f"{self.arg}: the folder has {len(self)} image{'s' * (len(self) != 1)}; {n} samples need "
                             f"{2 * n} ({n} real and {n} more, disjoint, for the real-vs-real floor)",
                             fix=f"add images to {self.arg} or ask for at most {len(self) // 2} samples")
        a, b = self.halves()
        for i in a[:n] + b[:n]:
            self._decode(i)

    def batch(self, seed: int, start: int, stop: int) -> torch.Tensor:
        """Images ``start .. stop`` of the real half (``seed`` = the folder's seed) or of the floor's half
        (its stream ``omissions.floor``), in the permutation's order."""
        a, b = self.halves()
        if seed == self.seed:
            half = a
        elif seed == self.floor_seed:
            half = b
        else:
            raise InputError(f"seed: the folder {self.arg} draws with seed {self.seed} (real) or {self.floor_seed} "
                             f"(the floor), got {seed}", fix="give the folder the measurement's real_seed")
        if not 0 <= start <= stop <= len(half):
            raise InputError(f"{self.arg}: images {start} .. {stop} asked for; each half of the folder has {len(half)}",
                             fix=f"add images to {self.arg} or ask for fewer samples")
        return self.load(half[start:stop])
