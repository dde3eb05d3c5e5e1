"""GANatomy compute package: models, statistics, dissection, intervention, FID (no UI here).

Public entry points::

    core.toyworld.render(scene, n, seed, size=128)   # procedural scenes + exact labels
    core.load_segmenter("toyworld")                  # segmenter protocol (core.protocols)
    core.load_generator("progan/churchoutdoor")      # published / added models (core.published)
    core.load_features("toyworld")                   # FID feature network
    core.frechet_distance(mu1, s1, mu2, s2)
"""
from . import cache, hooks, protocols, published, sampling, toyworld  # noqa: F401
from .checkpoints import CheckpointError, load_checkpoint  # noqa: F401
from .fid import FeatureStats, feature_stats, frechet_distance  # noqa: F401
from .protocols import ProtocolError, check_generator, check_segmenter  # noqa: F401
from .progan import ProGAN  # noqa: F401
from .zoo import checkpoint_series, list_models, load_features, load_generator, load_segmenter  # noqa: F401

__version__ = "0.1.0"
from .dissect import Dissection, DissectOptions, dissect  # noqa: F401,E402

__all__ = ["cache", "hooks", "protocols", "published", "sampling", "toyworld", "CheckpointError", "load_checkpoint",
           "FeatureStats", "feature_stats", "frechet_distance", "ProtocolError", "check_generator",
           "check_segmenter", "ProGAN", "checkpoint_series", "list_models", "load_features",
           "load_generator", "load_segmenter", "Dissection", "DissectOptions", "dissect"]
