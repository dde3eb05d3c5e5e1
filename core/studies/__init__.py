"""Studies floor: measurements built from the engine and the models — comparisons of layers,
models, variants and training checkpoints on concept maps (:mod:`core.studies.comparisons`, whose
functions are also here), painting (:mod:`core.studies.paint`), the context study with toyworld's
classes, rules and intervals (:mod:`core.studies.context`), and evaluation against toyworld's
truth (:mod:`core.studies.evaluation`)."""
from core.studies import comparisons, context, evaluation, omissions, over_seeds, paint, probes, units  # noqa: F401
from core.studies.comparisons import *  # noqa: F401,F403
from core.studies.comparisons import __all__ as _comparisons

__all__ = ["comparisons", "context", "evaluation", "paint", *_comparisons]
