"""Camera views as the model sees them: a name and the size frames are resized to (no torch here,
so request parsing and the command line can use it)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """One camera as the model sees it: its name and the (height, width) it is resized to."""

    name: str
    height: int
    width: int

    def code_shape(self, spatial_factor: int = 8) -> tuple[int, int]:
        return self.height // spatial_factor, self.width // spatial_factor


CALVIN_VIEWS: dict[str, ViewSpec] = {
    "static": ViewSpec("static", 200, 200),
    "gripper": ViewSpec("gripper", 80, 80),
}
