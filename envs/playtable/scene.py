"""The PlayTable scene: desk with cabinet, sliding door, drawer, button + LED, switch + bulb; three blocks.

Everything is built from primitive shapes in code. The desk is one articulated body whose links
carry CALVIN's names (``base_link`` is the desk top, ``plank_link`` the shelf behind the sliding
door, ``drawer_link`` the drawer, ``slide_link`` the door), so contact-based task checks read the
same as CALVIN's. Links of one body never collide with each other, which keeps the contact pairs
to what matters: blocks against furniture, robot and each other.

Button and switch drive the lights the way CALVIN's do: each press of the button (joint past half
its travel) toggles the LED; the bulb is on while the switch is above half its travel (it changes
only when the switch crosses that point, so a reset can set any combination, as in CALVIN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from envs.playtable.layout import (
    BLOCK_COLORS,
    BUTTON_RADIUS,
    BUTTON_RANGE,
    CABINET_BACK_Y,
    CABINET_FRONT_Y,
    CABINET_TOP_Z,
    COMPARTMENT_Y,
    DESK_X,
    DESK_Y,
    DOOR_HANDLE_DEPTH,
    DOOR_HANDLE_Z,
    DOOR_THICKNESS,
    DOOR_WIDTH,
    DOOR_Y,
    DRAWER_DEPTH,
    DRAWER_FRONT_Y,
    DRAWER_HANDLE_OFFSET,
    DRAWER_HANDLE_Z,
    DRAWER_RANGE,
    DRAWER_WIDTH,
    DRAWER_Z,
    SHELF_TOP_Z,
    SLIDER_RANGE,
    SWITCH_KNOB_DEPTH,
    SWITCH_LOW_Z,
    SWITCH_RANGE,
    TABLE_THICKNESS,
    TABLE_TOP_Z,
    TOP_SHELF_Y,
    WALL,
    SceneLayout,
)
from envs.playtable.textures import load_texture
from envs.playtable.urdf import Link, Part, box, load_urdf_text, urdf_text

BLOCKS = ("red_block", "blue_block", "pink_block")
#: CALVIN's body names for the blocks (``scene_info["movable_objects"]`` keys).
CALVIN_BLOCK_NAMES = {"red_block": "block_red", "blue_block": "block_blue", "pink_block": "block_pink"}
DOORS = {"base__slide": "slide_link", "base__drawer": "drawer_link"}
LED_ON = (0.1, 1.0, 0.15, 1.0)
LED_OFF = (0.12, 0.25, 0.13, 1.0)
BULB_ON = (1.0, 0.92, 0.15, 1.0)
BULB_OFF = (0.86, 0.86, 0.82, 1.0)
DARK = (0.15, 0.15, 0.16, 1.0)
GREY = (0.45, 0.45, 0.47, 1.0)

# Joint friction (velocity motors with target 0) and the button's spring (position motor to 0), newtons.
SLIDE_FRICTION = 4.0
DRAWER_FRICTION = 5.0
SWITCH_FRICTION = 2.0
BUTTON_SPRING = 4.0
BLOCK_MASS = 0.2
BLOCK_FRICTION = 0.9


def _darker(rgba: tuple[float, float, float, float], factor: float) -> tuple[float, float, float, float]:
    return (rgba[0] * factor, rgba[1] * factor, rgba[2] * factor, rgba[3])


Landmarks = dict[str, tuple[str, tuple[float, float, float]]]


def desk_links(layout: SceneLayout) -> tuple[Link, list[Link], Landmarks]:
    """The desk's base link, its jointed links, and landmarks (link, world position at joint value 0)."""
    top, z_under = TABLE_TOP_Z, TABLE_TOP_Z - TABLE_THICKNESS
    cx0, cx1 = layout.compartment_x
    kx0, kx1 = layout.cabinet_x
    col0, col1 = layout.column_x
    col_mid = (col0 + col1) / 2
    dx = layout.drawer_x
    bx, by = layout.button_xy
    sx = layout.switch_x
    knob_y = CABINET_FRONT_Y - SWITCH_KNOB_DEPTH / 2
    cab = layout.cabinet_rgba
    desk_side = _darker(layout.desk_rgba, 0.75)

    base_parts = [
        # Work surface in front of the cabinet (collides), and its visual continuation under the cabinet.
        box((DESK_X[0], DESK_Y[0], z_under), (DESK_X[1], CABINET_FRONT_Y, top), layout.desk_rgba),
        box((DESK_X[0], CABINET_FRONT_Y, z_under), (DESK_X[1], DESK_Y[1], top - 0.002), layout.desk_rgba, False),
        box((DESK_X[0], DESK_Y[0] - 0.002, z_under - 0.004), (DESK_X[1], DESK_Y[0], top), desk_side, False),
        # Drawer housing (drawn only).
        box((dx - DRAWER_WIDTH / 2 - 0.012, -0.20, 0.28), (dx - DRAWER_WIDTH / 2 - 0.002, 0.12, z_under), cab, False),
        box((dx + DRAWER_WIDTH / 2 + 0.002, -0.20, 0.28), (dx + DRAWER_WIDTH / 2 + 0.012, 0.12, z_under), cab, False),
        box((dx - DRAWER_WIDTH / 2 - 0.012, -0.20, 0.27), (dx + DRAWER_WIDTH / 2 + 0.012, 0.12, 0.28), cab, False),
        # Button housing.
        box((bx - 0.035, by - 0.035, top), (bx + 0.035, by + 0.035, top + 0.01), GREY),
    ]
    for x in (DESK_X[0] + 0.03, DESK_X[1] - 0.03):
        for y in (DESK_Y[0] + 0.03, DESK_Y[1] - 0.03):
            base_parts.append(box((x - 0.025, y - 0.025, 0.0), (x + 0.025, y + 0.025, z_under), layout.leg_rgba, False))
    base = Link("base_link", base_parts, mass=0.0)

    led_x = cx0 + 0.09 if layout.switch_side == "right" else cx1 - 0.09
    cabinet_parts = [
        box((cx0 - WALL, CABINET_FRONT_Y, top), (cx0, CABINET_BACK_Y, CABINET_TOP_Z + 0.02), cab),
        box((cx1, CABINET_FRONT_Y, top), (cx1 + WALL, CABINET_BACK_Y, CABINET_TOP_Z + 0.02), cab),
        box((col0, CABINET_FRONT_Y, top), (col1, CABINET_BACK_Y, CABINET_TOP_Z + 0.02), cab),
        box((kx0, COMPARTMENT_Y[1], top), (kx1, CABINET_BACK_Y, CABINET_TOP_Z), _darker(cab, 0.8)),
        box((kx0, TOP_SHELF_Y, CABINET_TOP_Z), (kx1, CABINET_BACK_Y, CABINET_TOP_Z + 0.02), cab),
        # Switch slot and LED / bulb sockets (drawn only).
        box((sx - 0.008, CABINET_FRONT_Y - 0.002, 0.46), (sx + 0.008, CABINET_FRONT_Y, 0.60), DARK, False),
        box((led_x - 0.045, 0.145, CABINET_TOP_Z + 0.02), (led_x + 0.045, 0.195, CABINET_TOP_Z + 0.035), DARK, False),
        box((col_mid - 0.02, 0.13, CABINET_TOP_Z + 0.02), (col_mid + 0.02, 0.17, CABINET_TOP_Z + 0.05), GREY, False),
    ]
    door_x = layout.door_x_closed_right
    door_origin = (door_x, DOOR_Y, (top + CABINET_TOP_Z) / 2)
    door_front = DOOR_Y - DOOR_THICKNESS / 2
    drawer = _drawer_link(layout)
    landmarks: Landmarks = {
        "slider_handle": ("slide_link", (door_x, door_front - DOOR_HANDLE_DEPTH / 2, sum(DOOR_HANDLE_Z) / 2)),
        "drawer_handle": ("drawer_link", (dx, DRAWER_FRONT_Y - DRAWER_HANDLE_OFFSET - 0.01, DRAWER_HANDLE_Z)),
        "drawer_floor": ("drawer_link", (dx, DRAWER_FRONT_Y + DRAWER_DEPTH / 2, DRAWER_Z[0] + 0.01)),
        "button": ("button_link", (bx, by, top + 0.03)),
        "switch": ("switch_link", (sx, knob_y, SWITCH_LOW_Z)),
    }
    links = [
        Link("cabinet_link", cabinet_parts, origin=(0.0, 0.1, 0.6), mass=1.0),
        Link(
            "plank_link",
            [box((cx0, CABINET_FRONT_Y, SHELF_TOP_Z - 0.02), (cx1, COMPARTMENT_Y[1], SHELF_TOP_Z), _darker(cab, 0.9))],
            origin=((cx0 + cx1) / 2, 0.1, SHELF_TOP_Z),
            mass=1.0,
        ),
        Link(
            "slide_link",
            [
                box(
                    (door_x - DOOR_WIDTH / 2, door_front, top + 0.007),
                    (door_x + DOOR_WIDTH / 2, DOOR_Y + DOOR_THICKNESS / 2, CABINET_TOP_Z - 0.005),
                    layout.door_rgba,
                ),
                box(
                    (door_x - 0.0125, door_front - DOOR_HANDLE_DEPTH, DOOR_HANDLE_Z[0]),
                    (door_x + 0.0125, door_front, DOOR_HANDLE_Z[1]),
                    DARK,
                ),
            ],
            origin=door_origin,
            mass=0.8,
            joint="prismatic",
            axis=(-1.0, 0.0, 0.0),
            limits=SLIDER_RANGE,
            joint_name="base__slide",
        ),
        drawer,
        Link(
            "button_link",
            [Part("cylinder", (bx, by, top + 0.02), radius=BUTTON_RADIUS, length=0.02, rgba=DARK)],
            origin=(bx, by, top + 0.03),
            mass=0.05,
            joint="prismatic",
            axis=(0.0, 0.0, -1.0),
            limits=BUTTON_RANGE,
            joint_name="base__button",
        ),
        Link(
            "switch_link",
            [
                box(
                    (sx - 0.02, CABINET_FRONT_Y - SWITCH_KNOB_DEPTH, SWITCH_LOW_Z - 0.0125),
                    (sx + 0.02, CABINET_FRONT_Y, SWITCH_LOW_Z + 0.0125),
                    GREY,
                )
            ],
            origin=(sx, knob_y, SWITCH_LOW_Z),
            mass=0.05,
            joint="prismatic",
            axis=(0.0, 0.0, 1.0),
            limits=SWITCH_RANGE,
            joint_name="base__switch",
        ),
        Link(
            "led_link",
            [
                box(
                    (led_x - 0.035, 0.15, CABINET_TOP_Z + 0.035),
                    (led_x + 0.035, 0.19, CABINET_TOP_Z + 0.045),
                    LED_OFF,
                    False,
                )
            ],
            origin=(led_x, 0.17, CABINET_TOP_Z + 0.04),
            mass=0.01,
            joint_name="base__led",
        ),
        Link(
            "light_link",
            [Part("sphere", (col_mid, 0.15, CABINET_TOP_Z + 0.085), radius=0.037, rgba=BULB_OFF, collide=False)],
            origin=(col_mid, 0.15, CABINET_TOP_Z + 0.085),
            mass=0.01,
            joint_name="base__light",
        ),
    ]
    return base, links, landmarks


def _drawer_link(layout: SceneLayout) -> Link:
    dx = layout.drawer_x
    half = DRAWER_WIDTH / 2
    z0, z1 = DRAWER_Z
    front, back = DRAWER_FRONT_Y, DRAWER_FRONT_Y + DRAWER_DEPTH
    wall = 0.012
    rgba = layout.drawer_rgba
    inner = _darker(rgba, 0.85)
    bar_y1 = front - DRAWER_HANDLE_OFFSET
    parts = [
        box((dx - half, front, z0), (dx + half, back, z0 + 0.01), inner),
        box((dx - half, front, z0), (dx + half, front + 0.015, z1), rgba),
        box((dx - half, back - wall, z0 + 0.01), (dx + half, back, z1 - 0.015), inner),
        box((dx - half, front + 0.015, z0 + 0.01), (dx - half + wall, back - wall, z1 - 0.015), inner),
        box((dx + half - wall, front + 0.015, z0 + 0.01), (dx + half, back - wall, z1 - 0.015), inner),
        # Handle: a bar 5 cm in front of the drawer front, on two posts.
        box((dx - 0.07, bar_y1 - 0.02, DRAWER_HANDLE_Z - 0.01), (dx + 0.07, bar_y1, DRAWER_HANDLE_Z + 0.01), DARK),
        box((dx - 0.0575, bar_y1, DRAWER_HANDLE_Z - 0.0075), (dx - 0.0425, front, DRAWER_HANDLE_Z + 0.0075), DARK),
        box((dx + 0.0425, bar_y1, DRAWER_HANDLE_Z - 0.0075), (dx + 0.0575, front, DRAWER_HANDLE_Z + 0.0075), DARK),
    ]
    return Link(
        "drawer_link",
        parts,
        origin=(dx, (front + back) / 2, (z0 + z1) / 2),
        mass=1.5,
        joint="prismatic",
        axis=(0.0, -1.0, 0.0),
        limits=DRAWER_RANGE,
        joint_name="base__drawer",
    )


@dataclass
class LightLogic:
    """Logical states of the LED (toggled by button presses) and bulb (follows switch crossings)."""

    led: int = 0
    lightbulb: int = 0
    button_was_pressed: bool = False
    switch_was_on: bool = False


class PlayTableScene:
    """Loads the scene into a pybullet client and reads/writes its state."""

    def __init__(self, client: int, layout: SceneLayout) -> None:
        self.client = client
        self.layout = layout
        base, links, self._landmarks = desk_links(layout)
        self._link_origins = {link.name: link.origin for link in links}
        self.table_uid = load_urdf_text(urdf_text("playtable_desk", base, links), client)
        self.links = {"base_link": -1}
        self.joints: dict[str, int] = {}
        for index in range(p.getNumJoints(self.table_uid, physicsClientId=client)):
            info = p.getJointInfo(self.table_uid, index, physicsClientId=client)
            self.links[info[12].decode()] = index
            self.joints[info[1].decode()] = index
        self.floor_uid = self._add_floor()
        self.block_uids = {block: self._add_block(block) for block in BLOCKS}
        self.uid_names = {self.table_uid: "table", self.floor_uid: "floor"}
        self.uid_names.update({uid: block for block, uid in self.block_uids.items()})
        self.table_link_names = {index: name for name, index in self.links.items()}
        for link in ("base_link", "plank_link", "drawer_link", "cabinet_link", "slide_link"):
            p.changeDynamics(self.table_uid, self.links[link], lateralFriction=0.6, physicsClientId=client)
        self._apply_textures()
        self._setup_joint_motors()
        self.lights = LightLogic()
        self._show_lights()

    # --- construction ------------------------------------------------------------------------

    def _apply_textures(self) -> None:
        """Wood or laminate on the desk top (its first two visual shapes) and the door panel."""
        layout = self.layout
        for link, shapes, kind, rgba in (
            ("base_link", (0, 1), layout.desk_texture, layout.desk_rgba),
            ("slide_link", (0,), layout.door_texture, layout.door_rgba),
        ):
            if kind == "plain":
                continue
            texture = load_texture(kind, self.client)
            for shape in shapes:
                p.changeVisualShape(
                    self.table_uid,
                    self.links[link],
                    shapeIndex=shape,
                    textureUniqueId=texture,
                    rgbaColor=rgba,
                    physicsClientId=self.client,
                )

    def _add_floor(self) -> int:
        half = (2.5, 2.5, 0.01)
        collision = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        visual = p.createVisualShape(
            p.GEOM_BOX, halfExtents=half, rgbaColor=(0.55, 0.55, 0.56, 1.0), physicsClientId=self.client
        )
        return p.createMultiBody(0, collision, visual, basePosition=(0, 0, -half[2]), physicsClientId=self.client)

    def _add_block(self, block: str) -> int:
        half = [s / 2 for s in self.layout.block_size(block)]
        collision = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        visual = p.createVisualShape(
            p.GEOM_BOX, halfExtents=half, rgbaColor=BLOCK_COLORS[block], physicsClientId=self.client
        )
        uid = p.createMultiBody(BLOCK_MASS, collision, visual, basePosition=(0, 0, 1), physicsClientId=self.client)
        p.changeDynamics(
            uid,
            -1,
            lateralFriction=BLOCK_FRICTION,
            spinningFriction=0.001,
            rollingFriction=0.0,
            physicsClientId=self.client,
        )
        return uid

    def _setup_joint_motors(self) -> None:
        for joint, force in (
            ("base__slide", SLIDE_FRICTION),
            ("base__drawer", DRAWER_FRICTION),
            ("base__switch", SWITCH_FRICTION),
        ):
            p.setJointMotorControl2(
                self.table_uid,
                self.joints[joint],
                p.VELOCITY_CONTROL,
                targetVelocity=0.0,
                force=force,
                physicsClientId=self.client,
            )
        p.setJointMotorControl2(
            self.table_uid,
            self.joints["base__button"],
            p.POSITION_CONTROL,
            targetPosition=0.0,
            force=BUTTON_SPRING,
            physicsClientId=self.client,
        )

    # --- state -------------------------------------------------------------------------------

    def landmarks(self) -> dict[str, np.ndarray]:
        """Current world positions of the handles, button top, switch knob and drawer floor centre.

        Scripted experts aim at these; they move with their joints (the drawer handle with the drawer).
        """
        result = {}
        for name, (link, world_at_zero) in self._landmarks.items():
            now = p.getLinkState(self.table_uid, self.links[link], physicsClientId=self.client)[4]
            shift = np.subtract(now, self._link_origins[link])
            result[name] = np.asarray(world_at_zero) + shift
        return result

    def joint_value(self, joint: str) -> float:
        return float(p.getJointState(self.table_uid, self.joints[joint], physicsClientId=self.client)[0])

    def set_joint(self, joint: str, value: float) -> None:
        """Teleport a furniture joint (``base__slide``, ``base__drawer``, ``base__button``, ``base__switch``)."""
        if joint not in ("base__slide", "base__drawer", "base__button", "base__switch"):
            raise ValueError(f"unknown joint {joint!r}")
        p.resetJointState(self.table_uid, self.joints[joint], float(value), 0.0, physicsClientId=self.client)

    def set_block_pose(self, block: str, position, euler) -> None:
        """Teleport a block (position of its centre, euler xyz) and stop it."""
        if block not in self.block_uids:
            raise ValueError(f"unknown block {block!r}; choose one of {list(self.block_uids)}")
        uid = self.block_uids[block]
        p.resetBasePositionAndOrientation(
            uid,
            [float(v) for v in position],
            p.getQuaternionFromEuler([float(v) for v in euler]),
            physicsClientId=self.client,
        )
        p.resetBaseVelocity(uid, (0, 0, 0), (0, 0, 0), physicsClientId=self.client)

    def set_lights(self, lightbulb: int, led: int) -> None:
        """Set the lights' logical states, keeping the button/switch edge detectors in step with the joints."""
        self.lights = LightLogic(
            led=int(bool(led)),
            lightbulb=int(bool(lightbulb)),
            button_was_pressed=self._button_pressed(),
            switch_was_on=self._switch_on(),
        )
        self._show_lights()

    def _button_pressed(self) -> bool:
        return self.joint_value("base__button") > sum(BUTTON_RANGE) / 2

    def _switch_on(self) -> bool:
        return self.joint_value("base__switch") > sum(SWITCH_RANGE) / 2

    def update_lights(self) -> bool:
        """Apply button presses and switch crossings after a physics step; returns whether a light changed."""
        pressed, switch_on = self._button_pressed(), self._switch_on()
        lights = self.lights
        changed = False
        if pressed and not lights.button_was_pressed:
            lights.led = 1 - lights.led
            changed = True
        if switch_on != lights.switch_was_on and lights.lightbulb != int(switch_on):
            lights.lightbulb = int(switch_on)
            changed = True
        lights.button_was_pressed, lights.switch_was_on = pressed, switch_on
        if changed:
            self._show_lights()
        return changed

    def _show_lights(self) -> None:
        p.changeVisualShape(
            self.table_uid,
            self.links["led_link"],
            rgbaColor=LED_ON if self.lights.led else LED_OFF,
            physicsClientId=self.client,
        )
        p.changeVisualShape(
            self.table_uid,
            self.links["light_link"],
            rgbaColor=BULB_ON if self.lights.lightbulb else BULB_OFF,
            physicsClientId=self.client,
        )

    def reset_from_scene_obs(self, scene_obs: np.ndarray) -> None:
        """Set the whole scene from CALVIN's 24-d ``scene_obs``."""
        for joint, value in zip(
            ("base__slide", "base__drawer", "base__button", "base__switch"), scene_obs[:4], strict=True
        ):
            self.set_joint(joint, value)
        for index, block in enumerate(BLOCKS):
            pose = scene_obs[6 + 6 * index : 12 + 6 * index]
            self.set_block_pose(block, pose[:3], pose[3:])
        self.set_lights(lightbulb=round(float(scene_obs[4])), led=round(float(scene_obs[5])))

    def scene_obs(self) -> np.ndarray:
        """CALVIN's 24-d ``scene_obs``: slider, drawer, button, switch, lightbulb, led, 3 block poses (xyz, euler)."""
        joints = p.getJointStates(
            self.table_uid,
            [self.joints[j] for j in ("base__slide", "base__drawer", "base__button", "base__switch")],
            physicsClientId=self.client,
        )
        values = [state[0] for state in joints] + [float(self.lights.lightbulb), float(self.lights.led)]
        for block in BLOCKS:
            pos, quat = p.getBasePositionAndOrientation(self.block_uids[block], physicsClientId=self.client)
            values.extend(pos)
            values.extend(p.getEulerFromQuaternion(quat))
        return np.array(values)
