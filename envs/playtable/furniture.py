"""The desk's geometry per scene variant: its links, their boxes and colours, and landmarks.

Everything is a primitive (box, cylinder, sphere) placed in CALVIN's world coordinates at joint
value 0. Links carry CALVIN's names (``base_link`` the desk top, ``plank_link`` the shelf behind
the sliding door, ``drawer_link``, ``slide_link``, ``button_link``, ``switch_link``, ``led_link``,
``light_link``) plus ``cabinet_link`` for the cabinet's walls, so contact-based task checks read as
CALVIN's. Joint ranges are CALVIN's (see :mod:`envs.playtable.layout`).
"""

from __future__ import annotations

from envs.playtable.layout import (
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
from envs.playtable.urdf import Link, Part, box

LED_OFF = (0.12, 0.25, 0.13, 1.0)
BULB_OFF = (0.86, 0.86, 0.82, 1.0)
DARK = (0.15, 0.15, 0.16, 1.0)
GREY = (0.45, 0.45, 0.47, 1.0)


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
