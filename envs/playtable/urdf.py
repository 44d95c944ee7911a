"""A minimal URDF writer for articulated furniture made of boxes, cylinders and spheres.

pybullet's ``createMultiBody`` cannot give joints names or limits, so the desk is written as URDF
text in code and loaded from a temporary file: no asset files, but named links, joint limits and a
colour per visual shape. Part positions are given in world coordinates at joint value 0; the writer
converts them into each link's frame.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from envs.playtable.bullet import p

Vec3 = tuple[float, float, float]
RGBA = tuple[float, float, float, float]


@dataclass(frozen=True)
class Part:
    """One primitive shape. ``rgba=None`` makes it invisible; ``collide=False`` makes it visual only."""

    shape: str  # "box" | "cylinder" | "sphere"
    center: Vec3
    size: Vec3 = (0.0, 0.0, 0.0)  # box: full extents
    radius: float = 0.0
    length: float = 0.0  # cylinder: along z
    rgba: RGBA | None = None
    collide: bool = True

    def geometry_xml(self) -> str:
        if self.shape == "box":
            return f'<box size="{_fmt(self.size)}"/>'
        if self.shape == "cylinder":
            return f'<cylinder radius="{self.radius:.5f}" length="{self.length:.5f}"/>'
        if self.shape == "sphere":
            return f'<sphere radius="{self.radius:.5f}"/>'
        raise ValueError(f"unknown part shape {self.shape!r}")


def box(lo: Vec3, hi: Vec3, rgba: RGBA | None = None, collide: bool = True) -> Part:
    """A box from its lower and upper corners (world coordinates)."""
    center = tuple((a + b) / 2 for a, b in zip(lo, hi, strict=True))
    size = tuple(b - a for a, b in zip(lo, hi, strict=True))
    if min(size) <= 0:
        raise ValueError(f"box corners {lo} and {hi} do not span a volume")
    return Part("box", center, size=size, rgba=rgba, collide=collide)  # type: ignore[arg-type]


@dataclass
class Link:
    """A link attached to the base by a fixed or prismatic joint at ``origin`` (world coordinates)."""

    name: str
    parts: list[Part]
    origin: Vec3 = (0.0, 0.0, 0.0)
    mass: float = 0.1
    joint: str = "fixed"  # "fixed" | "prismatic"
    axis: Vec3 = (1.0, 0.0, 0.0)
    limits: tuple[float, float] = (0.0, 0.0)
    joint_name: str = field(default="")


def _fmt(values: Vec3 | RGBA) -> str:
    return " ".join(f"{v:.5f}" for v in values)


def _local(center: Vec3, origin: Vec3) -> Vec3:
    return tuple(c - o for c, o in zip(center, origin, strict=True))  # type: ignore[return-value]


def _link_xml(link: Link) -> str:
    lines = [f'<link name="{link.name}">']
    inertia = max(link.mass, 1e-4) * 1e-3
    lines.append(
        f'<inertial><origin xyz="0 0 0"/><mass value="{link.mass:.5f}"/>'
        f'<inertia ixx="{inertia:.6f}" ixy="0" ixz="0" iyy="{inertia:.6f}" iyz="0" izz="{inertia:.6f}"/></inertial>'
    )
    for index, part in enumerate(link.parts):
        xyz = _fmt(_local(part.center, link.origin))
        if part.rgba is not None:
            lines.append(
                f'<visual><origin xyz="{xyz}"/><geometry>{part.geometry_xml()}</geometry>'
                f'<material name="{link.name}_{index}"><color rgba="{_fmt(part.rgba)}"/></material></visual>'
            )
        if part.collide:
            lines.append(f'<collision><origin xyz="{xyz}"/><geometry>{part.geometry_xml()}</geometry></collision>')
    lines.append("</link>")
    return "\n".join(lines)


def urdf_text(robot_name: str, base: Link, links: list[Link]) -> str:
    """URDF for ``base`` (at the world origin) with ``links`` jointed to it."""
    parts = [f'<?xml version="1.0"?>\n<robot name="{robot_name}">', _link_xml(base)]
    for link in links:
        parts.append(_link_xml(link))
        joint_name = link.joint_name or f"base__{link.name}"
        limit = ""
        if link.joint == "prismatic":
            limit = f'<limit lower="{link.limits[0]:.5f}" upper="{link.limits[1]:.5f}" effort="1000" velocity="10"/>'
        parts.append(
            f'<joint name="{joint_name}" type="{link.joint}"><parent link="{base.name}"/><child link="{link.name}"/>'
            f'<origin xyz="{_fmt(link.origin)}"/><axis xyz="{_fmt(link.axis)}"/>{limit}</joint>'
        )
    parts.append("</robot>")
    return "\n".join(parts)


def load_urdf_text(text: str, client: int, fixed_base: bool = True) -> int:
    """Load URDF text into a pybullet client through a temporary file; returns the body id."""
    with tempfile.TemporaryDirectory(prefix="playtable_urdf_") as tmp:
        path = os.path.join(tmp, "body.urdf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return p.loadURDF(path, useFixedBase=fixed_base, physicsClientId=client)
