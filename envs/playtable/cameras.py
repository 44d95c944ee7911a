"""CALVIN's two cameras and the renderer behind them.

The static camera uses CALVIN's parameters (eye, target, up vector, 10 degree field of view) and
renders 200x200, the size stored in CALVIN's datasets; the gripper camera sits where CALVIN's
``gripper_cam`` link is (on the hand, looking past the fingers, 75 degrees) and renders 84x84.

Rendering uses pybullet's TinyRenderer by default, which works everywhere. ``backend="egl"`` loads
pybullet's ``eglRenderer`` plugin for hardware OpenGL; when the plugin does not load (no GPU, no
EGL driver) the renderer warns and falls back to TinyRenderer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from envs.playtable.bullet import p

log = logging.getLogger(__name__)

BACKENDS = ("tiny", "egl")


@dataclass(frozen=True)
class CameraSpec:
    width: int
    height: int
    fov: float
    near: float
    far: float

    def projection(self) -> tuple[float, ...]:
        return p.computeProjectionMatrixFOV(self.fov, self.width / self.height, self.near, self.far)


STATIC_CAMERA = CameraSpec(width=200, height=200, fov=10.0, near=0.01, far=10.0)
STATIC_EYE = (2.871459009488717, -2.166602199425597, 2.555159848480571)
STATIC_TARGET = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
STATIC_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)
GRIPPER_CAMERA = CameraSpec(width=84, height=84, fov=75.0, near=0.01, far=2.0)

# TinyRenderer lighting: a light high above and in front of the desk, soft shadows off (they cost
# more than the rest of the frame); ambient-heavy so that the furniture's flat colours read well.
LIGHT = dict(
    lightDirection=(0.6, -1.0, 2.0),
    lightColor=(1.0, 1.0, 1.0),
    lightAmbientCoeff=0.6,
    lightDiffuseCoeff=0.45,
    lightSpecularCoeff=0.05,
    shadow=0,
)


def static_view_matrix() -> tuple[float, ...]:
    return p.computeViewMatrix(STATIC_EYE, STATIC_TARGET, STATIC_UP)


def gripper_view_matrix(cam_pos, cam_quat) -> tuple[float, ...]:
    """CALVIN's gripper camera: looks along the camera frame's +y, with its -z as up."""
    rot = np.array(p.getMatrixFromQuaternion(cam_quat)).reshape(3, 3)
    eye = np.asarray(cam_pos)
    return p.computeViewMatrix(eye, eye + rot[:, 1], -rot[:, 2])


class Renderer:
    """Renders RGB frames of one pybullet client with TinyRenderer or the EGL plugin."""

    def __init__(self, client: int, backend: str = "tiny") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown renderer backend {backend!r}; choose one of {BACKENDS}")
        self.client = client
        self.backend = "tiny"
        self._plugin = -1
        if backend == "egl":
            self._plugin = self._load_egl()
            if self._plugin >= 0:
                self.backend = "egl"

    def _load_egl(self) -> int:
        spec = importlib.util.find_spec("eglRenderer")
        try:
            if spec is not None and spec.origin:
                plugin = p.loadPlugin(spec.origin, "_eglRendererPlugin", physicsClientId=self.client)
            else:
                plugin = p.loadPlugin("eglRendererPlugin", physicsClientId=self.client)
        except p.error as error:  # pragma: no cover - depends on the machine
            plugin = -1
            log.debug("eglRenderer failed: %s", error)
        if plugin < 0:
            warnings.warn(
                "pybullet's eglRenderer plugin did not load (no EGL driver or GPU?); falling back to TinyRenderer",
                RuntimeWarning,
                stacklevel=3,
            )
        return plugin

    def render(self, spec: CameraSpec, view_matrix) -> np.ndarray:
        """An ``(height, width, 3)`` uint8 RGB frame."""
        renderer = p.ER_BULLET_HARDWARE_OPENGL if self.backend == "egl" else p.ER_TINY_RENDERER
        _, _, rgba, _, _ = p.getCameraImage(
            spec.width,
            spec.height,
            view_matrix,
            spec.projection(),
            renderer=renderer,
            flags=p.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self.client,
            **LIGHT,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(spec.height, spec.width, 4)[:, :, :3]
        return np.ascontiguousarray(rgb)

    def close(self) -> None:
        if self._plugin >= 0:
            with contextlib.suppress(p.error):  # the client may already be gone
                p.unloadPlugin(self._plugin, physicsClientId=self.client)
            self._plugin = -1


def static_camera_sees(point) -> bool:
    """Whether a world point projects inside the static camera's image (in front of it, within the frame)."""
    view = np.asarray(static_view_matrix(), dtype=np.float64).reshape(4, 4).T  # pybullet: column-major
    proj = np.asarray(STATIC_CAMERA.projection(), dtype=np.float64).reshape(4, 4).T
    clip = proj @ view @ np.append(np.asarray(point, dtype=np.float64), 1.0)
    if clip[3] <= 0:
        return False
    ndc = clip[:3] / clip[3]
    return bool(np.all(np.abs(ndc[:2]) <= 1.0))
