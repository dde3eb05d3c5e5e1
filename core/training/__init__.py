"""Training floor: the toyworld networks' and GANs' training (scripts/train_*.py, ``ganatomy train``).

``core.training`` holds the shared helpers of :mod:`core.training.loop` (seeded data, atomic
resumable checkpoints, compact checkpoints, snapshots); :mod:`core.training.gan` the
discriminator, losses, EMA and the real-scene stream; :mod:`core.training.run` one GAN training
run (:func:`train_gan`, ``ganatomy train``). Imports base, toyworld, models, engine
and studies; nothing imports it but the top.
"""
from core.training import gan, loop, run  # noqa: F401
from core.training.loop import *  # noqa: F401,F403
from core.training.loop import __all__ as _loop
from core.training.run import train_gan

__all__ = ["gan", "loop", "run", "train_gan", *_loop]
