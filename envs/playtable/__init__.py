"""PlayTable: a CALVIN-like pybullet simulator built from primitives and pybullet_data's Franka Panda.

Modules: ``layout`` (where things are, per scene variant), ``urdf`` (writes the desk's URDF),
``scene`` (desk, blocks, lights), ``robot`` (Panda, IK, gripper), ``cameras`` (CALVIN's two
cameras, TinyRenderer / EGL), ``observation`` (lazily rendered images), ``info`` (CALVIN's info
dict), ``env`` (:class:`PlayTableEnv`).
"""
