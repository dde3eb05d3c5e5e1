"""GANatomy compute package: dissect, intervene on and repair the units of GAN generators
(no UI here). Floors, bottom to top (docs/ARCHITECTURE.md; a test keeps the imports so):
``core.base`` <- ``core.toyworld`` <- ``core.models``; ``core.base`` <- ``core.engine`` <-
``core.outputs``; ``core.base`` <- ``core.userdata`` (what users write: flags, added models);
``core.studies`` and ``core.training`` on top of them.

The public API, by example::

    import core
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    res = core.dissect(G, seg, ["layer4"], n_samples=2000)          # core.Dissection
    k = core.insertion_constants(G, seg, "layer4", "door")          # per-unit k (S-6.4)
    images = core.generate(G, z, [core.Edit("layer4", [3, 17], "insert", k[[3, 17]], mask)])
    ace = core.ace(G, seg, "layer4", "door")                        # eq. 5-6
    images, labels = core.toyworld.render("town", n=16, seed=0)     # exact labels
"""
from core import engine, models, outputs, studies, toyworld, training, userdata
from core.base import cache, errors, hooks, protocols, sampling
from core.base.checkpoints import load_checkpoint
from core.base.errors import (
    ArgumentTypeError,
    BudgetError,
    CacheError,
    CheckpointError,
    DownloadError,
    GanatomyError,
    InputError,
    MissingPackageError,
    MissingWeightsError,
    ProtocolError,
    UnitIndexError,
    UnknownNameError,
)
from core.base.hooks import Trace
from core.base.protocols import check_generator, check_segmenter
from core.engine.bases import fit_basis
from core.engine.causal import AceOptions, AceResult, ablation_curve, ace, causal_effect, context_study, trace_effect
from core.engine.classifier_dissection import ClassifierDissection, ClassifierDissectOptions, dissect_classifier
from core.engine.dissection import Dissection, DissectOptions, dissect, label_categories
from core.engine.fid import FeatureStats, feature_stats, frechet_distance
from core.engine.importance import UnitImportance, unit_importance
from core.engine.intervention import Edit, generate, insertion_constants
from core.engine.omissions import Omissions, omissions
from core.engine.repair import repair_table, unit_fid
from core.models import checkpoint_series, list_models, load_classifier, load_features, load_generator, load_segmenter
from core.models.progan import ProGAN

__version__ = "0.2.0"

__all__ = ["cache", "errors", "hooks", "protocols", "sampling", "toyworld", "models", "engine", "outputs",
           "studies", "training", "userdata", "load_checkpoint", "Trace", "check_generator", "check_segmenter",
           "GanatomyError", "InputError", "UnknownNameError", "UnitIndexError", "ArgumentTypeError", "ProtocolError",
           "CheckpointError", "MissingWeightsError", "MissingPackageError", "DownloadError", "BudgetError",
           "CacheError", "checkpoint_series", "list_models", "load_features", "load_generator", "load_segmenter",
           "ProGAN", "ablation_curve", "ace", "AceOptions", "AceResult", "fit_basis", "causal_effect", "context_study",
           "trace_effect",
           "Dissection", "DissectOptions", "dissect", "label_categories", "FeatureStats", "feature_stats",
           "frechet_distance", "Edit", "generate", "insertion_constants", "repair_table",
           "unit_fid", "ClassifierDissection", "ClassifierDissectOptions", "dissect_classifier", "load_classifier",
           "Omissions", "omissions", "UnitImportance", "unit_importance"]
