"""Classifiers known by name (the classifier protocol of :mod:`core.base.protocols`): ``load_classifier``."""
from __future__ import annotations

from core.base.validate import check_choice
from core.models import efficientnet, toynets, zoo

__all__ = ["CLASSIFIERS", "load_classifier", "list_classifiers", "is_classifier", "load_toyworld_scenes",
           "load_toyworld_presence"]


def load_toyworld_scenes(device="cpu"):
    """The shipped toyworld feature network's scene head as a classifier (:class:`toynets.ToySceneClassifier`)."""
    return toynets.ToySceneClassifier(zoo.load_features("toyworld", device=device)).to(device).eval()


def load_toyworld_presence(device="cpu"):
    """The shipped toyworld feature network's concept-presence head as a multi-label classifier
    (:class:`toynets.ToyPresenceClassifier`)."""
    return toynets.ToyPresenceClassifier(zoo.load_features("toyworld", device=device)).to(device).eval()


# name -> (loader(device) -> model, what it needs)
CLASSIFIERS = {efficientnet.NAME: (efficientnet.load_efficientnet_lite0,
                                   f"ImageNet weights from the optional package `{efficientnet.PIP}`"),
               "toyworld-scenes": (load_toyworld_scenes, "the shipped toyworld feature network (scene types)"),
               "toyworld-presence": (load_toyworld_presence,
                                     "the shipped toyworld feature network (concept presence, multi-label)")}


def list_classifiers() -> list[str]:
    return list(CLASSIFIERS)


def is_classifier(name) -> bool:
    return isinstance(name, str) and name in CLASSIFIERS


def load_classifier(name: str, device="cpu"):
    """The classifier ``name`` (one of :data:`CLASSIFIERS`) on ``device``, in eval mode; a missing
    optional package raises :class:`core.base.errors.MissingPackageError` naming its pip command."""
    check_choice("name", name, CLASSIFIERS)
    return CLASSIFIERS[name][0](device)
