"""User-data floor: what the people of a shared lab write, as opposed to what GANatomy measures —
the manual artifact flags (:mod:`core.userdata.flags`) and the registry of models users add, with
their uploads (:mod:`core.userdata.models`). Every write goes through a lock and an atomic rename, so
sessions never lose each other's work, and names belong to whoever added them.

Imports only ``core.base``. Storage only: nothing here builds, loads or measures a model (the
models floor checks a file before it is stored here; the engine never reads user data: pages and
scripts read the flags and pass the units on)."""
from core.userdata import flags, models

__all__ = ["flags", "models"]
