"""The standard FID Inception network (the TF 2015-12-05 graph as ported by ``pytorch-fid``),
loaded from a local weights file — never downloaded by GANatomy.

The architecture comes from the ``pytorch-fid`` package (its FID-specific Inception blocks);
the weights file ``pt_inception-2015-12-05-6726825d.pth`` is looked for, in order, at:

1. ``$GANATOMY_INCEPTION`` (a file path),
2. ``core/weights/pt_inception-2015-12-05-6726825d.pth``,
3. ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``) — where
   ``pytorch-fid`` itself caches it after a first online run;
4. the same folder under torch-fidelity's name for the same weights,
   ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity caches it there too; the
   ``6726825d`` suffix is the file's SHA-256 prefix, identical for both).

Not used: torchvision's ImageNet Inception (``inception_v3_google-*.pth``) is a different network
whose FIDs are not comparable with published ones, and the TorchScript ``inception-2015-12-05.pt``
of StyleGAN/clean-fid cannot be loaded without executing code from the file.

Features: 2048-d pool3 activations of images in [-1, 1], resized to 299x299 bilinearly.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.base.checkpoints import CheckpointError, load_checkpoint, load_state_into

__all__ = ["WEIGHTS_NAME", "WEIGHTS_URL", "candidate_paths", "find_weights", "load_inception",
           "build_fid_inception", "InceptionFeatures"]

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FIDELITY_NAME = "weights-inception-2015-12-05-6726825d.pth"   # torch-fidelity's cache name
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME


def candidate_paths() -> list[Path]:
    out = []
    env = os.environ.get("GANATOMY_INCEPTION")
    if env:
        out.append(Path(env))
    out.append(Path(__file__).resolve().parents[1] / "weights" / WEIGHTS_NAME)
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    out.append(torch_home / "hub" / "checkpoints" / WEIGHTS_NAME)
    out.append(torch_home / "hub" / "checkpoints" / FIDELITY_NAME)
    return out


def find_weights() -> Path:
    for p in candidate_paths():
        if p.is_file():
            return p
    tried = "\n  ".join(str(p) for p in candidate_paths())
    raise CheckpointError(
        f"the FID Inception weights ({WEIGHTS_NAME}) were not found; looked at:\n  {tried}\n"
        f"Download {WEIGHTS_URL} on a machine with internet access and copy it to one of these paths "
        "(or set GANATOMY_INCEPTION=/path/to/file). Toyworld models do not need it: use the 'toyworld' "
        "feature network.")


def build_fid_inception() -> nn.Module:
    """The FID Inception architecture with random weights (blocks from ``pytorch-fid``)."""
    try:
        from pytorch_fid import inception as pf
    except ImportError as e:  # pragma: no cover - listed in requirements.txt
        raise ImportError("the 'inception' feature network needs the pytorch-fid package: "
                          "pip install pytorch-fid") from e
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


class InceptionFeatures(nn.Module):
    """images [-1, 1] N x 3 x H x W -> N x 2048 pool3 features."""

    dim = 2048

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def features(self, images: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        x = n.Conv2d_1a_3x3(x)
        x = n.Conv2d_2a_3x3(x)
        x = n.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, 3, 2)
        x = n.Conv2d_3b_1x1(x)
        x = n.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, images):
        return self.features(images)


def load_inception(device="cpu", path: str | os.PathLike | None = None) -> InceptionFeatures:
    """The FID Inception feature network from a local file (see the module docstring)."""
    path = Path(path) if path is not None else find_weights()
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not the Inception state dict")
    net = build_fid_inception()
    load_state_into(net, state, path)
    model = InceptionFeatures(net)
    model.source = str(path)
    return model.to(device).eval().requires_grad_(False)
