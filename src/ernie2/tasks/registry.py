"""The task registry: names to task factories, and loading a user's own `module:Class` task.

The built-in tasks register themselves when their module is imported; the registry imports every
module of this package the first time it is read, so a new built-in task is one new file here and
nothing else, and importing the registry alone stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ernie2.tasks.protocol import PROTOCOL_MEMBERS, PretrainingTask

TaskFactory = Callable[..., PretrainingTask]


class TaskRegistry(Mapping):
    """Read-only mapping name -> factory, complete (every built-in task loaded) when read."""

    def __init__(self) -> None:
        self._factories: dict[str, TaskFactory] = {}
        self._loaded = False

    def add(self, name: str, factory: TaskFactory) -> None:
        if name in self._factories:
            raise ValueError(f"task {name!r} is registered twice")
        self._factories[name] = factory

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = sys.modules[__name__.rpartition(".")[0]]
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")

    def __getitem__(self, name: str) -> TaskFactory:
        self._load_builtins()
        return self._factories[name]

    def __iter__(self) -> Iterator[str]:
        self._load_builtins()
        return iter(dict(self._factories))

    def __len__(self) -> int:
        self._load_builtins()
        return len(self._factories)


REGISTRY = TaskRegistry()


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def deco(factory: TaskFactory) -> TaskFactory:
        REGISTRY.add(name, factory)
        return factory
    return deco


def _module_of_file(path: Path):
    """A user's task file, imported once under a name of its own: torch.compile and pickling
    look classes up by module name, and a second load reuses the first."""
    if not path.is_file():
        raise FileNotFoundError(f"custom task file {path} not found")
    resolved = path.resolve()
    name = f"ernie2_user_task_{path.stem}_{zlib.crc32(str(resolved).encode()):08x}"
    module = sys.modules.get(name)
    if module is None:
        mod_spec = importlib.util.spec_from_file_location(name, resolved)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


def load_factory(spec: str) -> TaskFactory:
    """A registered name, `package.module:Class` or `path/to/file.py:Class`."""
    if spec in REGISTRY:
        return REGISTRY[spec]
    if ":" not in spec:
        raise KeyError(f"unknown task {spec!r}; registered: {', '.join(sorted(REGISTRY))}; "
                       "a custom task is named 'module:Class' or 'file.py:Class'")
    target, _, attr = spec.rpartition(":")
    module = (_module_of_file(Path(target)) if target.endswith(".py")
              else importlib.import_module(target))
    try:
        return getattr(module, attr)
    except AttributeError:
        raise KeyError(f"{target} has no {attr!r}") from None


def create_task(spec: str, **options: Any) -> PretrainingTask:
    task = load_factory(spec)(**options)
    missing = [a for a in PROTOCOL_MEMBERS if not hasattr(task, a)]
    if missing:
        raise TypeError(f"task {spec!r} lacks {', '.join(missing)} of the task protocol")
    return task
