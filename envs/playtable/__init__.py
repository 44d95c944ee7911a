"""PlayTable: a CALVIN-like pybullet simulator built from primitives and pybullet_data's Franka Panda.

Modules: ``layout`` (where things are, per scene variant), ``furniture`` (the desk's links and
shapes), ``urdf`` (writes them as URDF), ``textures`` (procedural wood / laminate), ``scene``
(loads desk and blocks, state in CALVIN's terms, lights), ``robot`` (Panda, IK, gripper),
``cameras`` (CALVIN's two cameras, TinyRenderer / EGL), ``observation`` (lazily rendered images),
``info`` (CALVIN's info dict), ``env`` (:class:`PlayTableEnv`).
"""
