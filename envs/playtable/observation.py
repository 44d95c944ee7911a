"""Camera images that are rendered only when somebody reads them.

Rendering is by far the most expensive part of a step, and many steps are never looked at (a
policy that predicts a chunk of actions, a scripted expert, an evaluation without video). An
observation's ``rgb_obs`` is therefore a :class:`LazyImages` mapping: ``obs["rgb_obs"]["rgb_static"]``
renders the static camera on first access and caches it for that step. It is a real ``dict``
subclass, so ``isinstance(x, dict)`` checks, ``dict(x)``, ``copy.deepcopy`` and pickling work and
give rendered arrays (copies are fully rendered ``LazyImages``, readable forever).

A frame can only show the present: once the environment has stepped or reset, images not read
before are gone, and reading them raises instead of silently showing a later state. Read what you
need before stepping, or call :meth:`LazyImages.materialize` to keep everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class StaleObservationError(RuntimeError):
    """An image of a past step was read after the environment moved on."""


class LazyImages(dict):
    """``{"rgb_static": ..., "rgb_gripper": ...}`` whose arrays are rendered on first access."""

    def __init__(self, names: tuple[str, ...], render: Callable[[str, int], np.ndarray] | None, epoch: int = 0) -> None:
        super().__init__(dict.fromkeys(names))
        self._render = render
        self._epoch = epoch

    @classmethod
    def rendered(cls, images: dict[str, np.ndarray]) -> LazyImages:
        """A ``LazyImages`` whose images are all there already (what copies and unpickling give)."""
        instance = cls(tuple(images), None)
        for name, image in images.items():
            dict.__setitem__(instance, name, image)
        return instance

    def __getitem__(self, name: str) -> np.ndarray:
        value = dict.__getitem__(self, name)
        if value is None:
            value = self._render(name, self._epoch)
            dict.__setitem__(self, name, value)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self:
            return default
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.keys(self))

    def values(self):  # type: ignore[override]
        return [self[name] for name in self]

    def items(self):  # type: ignore[override]
        return [(name, self[name]) for name in self]

    def materialize(self) -> dict[str, np.ndarray]:
        """Render whatever is missing now and return a plain dict of arrays."""
        return {name: self[name] for name in self}

    def is_rendered(self, name: str) -> bool:
        return dict.__getitem__(self, name) is not None

    def __reduce__(self):
        return (_rendered_images, (self.materialize(),))

    def __deepcopy__(self, memo: dict) -> LazyImages:
        return LazyImages.rendered({name: array.copy() for name, array in self.materialize().items()})

    def copy(self) -> LazyImages:  # type: ignore[override]
        return LazyImages.rendered(self.materialize())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, dict) or set(other) != set(self):
            return False
        return all(np.array_equal(self[name], other[name]) for name in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = {name: ("rendered" if self.is_rendered(name) else "lazy") for name in self}
        return f"LazyImages({state})"


def _rendered_images(images: dict[str, np.ndarray]) -> LazyImages:
    """Unpickling target: a fully rendered :class:`LazyImages`."""
    return LazyImages.rendered(images)
