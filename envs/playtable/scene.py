"""The PlayTable scene at run time: loads the desk (:mod:`envs.playtable.furniture`), the floor and
three blocks into a pybullet client, and reads and writes their state in CALVIN's terms.

The desk is one articulated body, and links of one body never collide with each other, which
keeps the contact pairs to what matters: blocks against furniture, robot and each other. Joint
friction is a velocity motor with target 0; the button has a spring (a weak position motor).

Button and switch drive the lights the way CALVIN's do: each press of the button (joint past half
its travel) toggles the LED; the bulb is on while the switch is above half its travel (it changes
only when the switch crosses that point, so a reset can set any combination, as in CALVIN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.playtable.bullet import p
from envs.playtable.furniture import BULB_OFF, LED_OFF, desk_links
from envs.playtable.layout import BLOCK_COLORS, BUTTON_RANGE, SWITCH_RANGE, SceneLayout
from envs.playtable.textures import load_texture
from envs.playtable.urdf import load_urdf_text, urdf_text

BLOCKS = ("red_block", "blue_block", "pink_block")
#: CALVIN's body names for the blocks (``scene_info["movable_objects"]`` keys).
CALVIN_BLOCK_NAMES = {"red_block": "block_red", "blue_block": "block_blue", "pink_block": "block_pink"}
DOORS = {"base__slide": "slide_link", "base__drawer": "drawer_link"}
LED_ON = (0.1, 1.0, 0.15, 1.0)
BULB_ON = (1.0, 0.92, 0.15, 1.0)

# Joint friction (velocity motors with target 0) and the button's spring (position motor to 0), newtons.
SLIDE_FRICTION = 4.0
DRAWER_FRICTION = 5.0
SWITCH_FRICTION = 2.0
BUTTON_SPRING = 4.0
BLOCK_MASS = 0.2
BLOCK_FRICTION = 0.9


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
