"""The privileged ``info`` dict: what CALVIN's task checks read, plus what scripted experts need.

The layout follows CALVIN's ``env.get_info()`` so CALVIN-style task code reads it unchanged:

* ``robot_info``: ``uid``, ``tcp_pos``, ``tcp_orn`` (euler), ``gripper_opening_width``,
  ``arm_joint_states``, ``gripper_action``, ``contacts`` (pybullet contact tuples of the robot);
  added: ``tcp_quat``, ``target_pos`` / ``target_orn`` (where relative actions are steering to).
* ``scene_info``:
  ``fixed_objects["table"]`` (``uid``, ``links`` name -> link index, and the layout facts
  ``shelf_split_x``, ``drawer_x_range``), ``movable_objects["block_red"|"block_blue"|"block_pink"]``
  (``uid``, ``current_pos``, ``current_orn`` quaternion, ``current_lin_vel``, ``current_ang_vel``,
  ``contacts``; added: ``current_euler``, ``touching`` (names of what the block touches: ``table``,
  ``shelf``, ``drawer``, ``cabinet``, ``slider``, ``floor``, ``robot``, another block ...), ``grasped``
  (held between both fingers)), ``doors["base__slide"|"base__drawer"]["current_state"]``,
  ``buttons["base__button"]``, ``switches["base__switch"]`` (``joint_state``, ``logical_state``) and
  ``lights["lightbulb"|"led"]["logical_state"]``.

Contact tuples are pybullet's: index 2 is the other body's id, index 4 its link.
"""

from __future__ import annotations

from typing import Any

from envs.playtable.bullet import p
from envs.playtable.robot import FINGER_JOINTS, Panda
from envs.playtable.scene import BLOCKS, CALVIN_BLOCK_NAMES, DOORS, PlayTableScene

#: What a contact with each desk link is called in ``touching``.
TABLE_LINK_NAMES = {
    "base_link": "table",
    "plank_link": "shelf",
    "drawer_link": "drawer",
    "cabinet_link": "cabinet",
    "slide_link": "slider",
    "button_link": "button",
    "switch_link": "switch",
    "led_link": "led",
    "light_link": "lightbulb",
}


def contact_name(scene: PlayTableScene, robot_uid: int, body: int, link: int) -> str:
    if body == robot_uid:
        return "robot"
    if body == scene.table_uid:
        return TABLE_LINK_NAMES.get(scene.table_link_names.get(link, ""), "table")
    return scene.uid_names.get(body, f"body{body}")


def build_info(robot: Panda, scene: PlayTableScene) -> dict[str, Any]:
    """Everything privileged about the current state (see the module docstring)."""
    client = robot.client
    state = robot.observe()
    robot_contacts = tuple(p.getContactPoints(bodyA=robot.uid, physicsClientId=client))
    robot_info = {
        "uid": robot.uid,
        "tcp_pos": tuple(state.tcp_pos),
        "tcp_orn": tuple(state.tcp_euler),
        "tcp_quat": tuple(state.tcp_quat),
        "gripper_opening_width": state.gripper_width,
        "arm_joint_states": list(state.arm_joints),
        "gripper_action": state.gripper_action,
        "target_pos": tuple(robot.target_pos),
        "target_orn": tuple(robot.target_orn),
        "contacts": robot_contacts,
    }
    movable = {}
    for block in BLOCKS:
        uid = scene.block_uids[block]
        pos, quat = p.getBasePositionAndOrientation(uid, physicsClientId=client)
        lin_vel, ang_vel = p.getBaseVelocity(uid, physicsClientId=client)
        contacts = tuple(p.getContactPoints(bodyA=uid, physicsClientId=client))
        fingers = {c[4] for c in contacts if c[2] == robot.uid}
        movable[CALVIN_BLOCK_NAMES[block]] = {
            "uid": uid,
            "current_pos": pos,
            "current_orn": quat,
            "current_euler": p.getEulerFromQuaternion(quat),
            "current_lin_vel": lin_vel,
            "current_ang_vel": ang_vel,
            "contacts": contacts,
            "touching": frozenset(contact_name(scene, robot.uid, c[2], c[4]) for c in contacts),
            "grasped": all(finger in fingers for finger in FINGER_JOINTS),
        }
    joints = {name: scene.joint_value(name) for name in ("base__slide", "base__drawer", "base__button", "base__switch")}
    layout = scene.layout
    lights = scene.lights
    scene_info = {
        "fixed_objects": {
            "table": {
                "uid": scene.table_uid,
                "links": dict(scene.links),
                "shelf_split_x": layout.shelf_split_x,
                "drawer_x_range": layout.drawer_x_range,
            }
        },
        "movable_objects": movable,
        "doors": {name: {"current_state": joints[name]} for name in DOORS},
        "buttons": {"base__button": {"joint_state": joints["base__button"], "logical_state": lights.led}},
        "switches": {"base__switch": {"joint_state": joints["base__switch"], "logical_state": lights.lightbulb}},
        "lights": {"lightbulb": {"logical_state": lights.lightbulb}, "led": {"logical_state": lights.led}},
    }
    return {"robot_info": robot_info, "scene_info": scene_info}
