"""Models floor: every architecture GANatomy loads, the catalog of models known by name, the
shipped toyworld networks, and downloads (only on request).

Imports only ``core.base`` and ``core.toyworld``. Each architecture module registers itself
(:func:`register_architecture`) and its published weights (:func:`register_published`) when it
is imported, here. Detection rules are disjoint and the fallback (ProGAN) is explicit, so the
order of registration does not matter.
"""
from core.base.errors import DownloadError, MissingPackageError, MissingWeightsError
from core.models import biggan, dcgan, inception, progan, segformer, stylegan2, toynets  # noqa: F401  (they register)
from core.models.catalog import (
    MODELS_ENV,
    PUBLISHED,
    ROOTS_ENV,
    Source,
    Spec,
    add_upload,
    available_generators,
    available_segmenters,
    is_known,
    missing_message,
    model_roots,
    models_dir,
    purge,
    register,
    register_published,
    removed_models,
    restore,
    spec,
    status,
    sweep_trash,
    trash_days,
    unregister,
    user_models,
)
from core.models.classifiers import CLASSIFIERS, is_classifier, list_classifiers, load_classifier
from core.models.downloads import check_url, download_url, fetch, pins, sha256_file, unverified
from core.models.registry import (
    Architecture,
    architectures,
    detect_arch,
    load_generator_file,
    load_segmenter_path,
    register_architecture,
)
from core.models.rewrites import add_rewrite
from core.models.zoo import (
    card_quality,
    checkpoint_series,
    images_seen,
    list_models,
    load_features,
    load_generator,
    load_registered,
    load_segmenter,
    zoo_table,
)

__all__ = ["add_rewrite", "CLASSIFIERS", "is_classifier", "list_classifiers", "load_classifier",
           "card_quality", "Architecture", "architectures", "detect_arch", "load_generator_file", "load_segmenter_path",
           "register_architecture", "MODELS_ENV", "PUBLISHED", "ROOTS_ENV", "model_roots", "Source", "Spec",
           "add_upload",
           "available_generators", "available_segmenters", "is_known", "missing_message", "models_dir",
           "register", "register_published", "spec", "status", "unregister", "user_models", "removed_models",
           "restore", "purge", "sweep_trash", "trash_days", "download_url",
           "fetch", "sha256_file", "check_url", "pins", "unverified", "checkpoint_series", "images_seen", "list_models",
           "load_features",
           "load_generator", "load_registered", "load_segmenter", "zoo_table", "DownloadError",
           "MissingPackageError", "MissingWeightsError"]
