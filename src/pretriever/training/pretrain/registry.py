"""The table of pre-training tasks, by name: the only place the trainer learns which tasks exist.

Adding a task is one module with an ``Options`` dataclass and a ``Task`` subclass, plus one entry
here (or ``register(MyTask)`` from the caller's own code, as the toy task of the tests does).
"""

from __future__ import annotations

from pretriever.errors import ConfigError
from pretriever.training.pretrain import bfs, cropping, ict, lexical, prop, retromae
from pretriever.training.pretrain.task import Task

TASKS: dict[str, type[Task]] = {}


def register(task: type[Task]) -> type[Task]:
    """Add ``task`` to the table under ``task.name`` (usable as a class decorator)."""
    if not getattr(task, "name", "") or not task.name.isidentifier():
        raise ConfigError(f"a task needs a name that is an identifier, got {getattr(task, 'name', None)!r}")
    if task.name in TASKS and TASKS[task.name] is not task:
        raise ConfigError(f"a task named '{task.name}' is registered already")
    TASKS[task.name] = task
    return task


for _task in (lexical.Lexical, ict.ICT, bfs.BFS, cropping.Cropping, prop.PROP, retromae.RetroMAE,
              retromae.DupMAE):
    register(_task)
