"""The calvin backend without calvin_env: config composition, refusals, install hints, one clean close.

calvin_env is never imported here. Its conf folder is imitated by a tiny tree in calvin_env's layout
(a data-collection config whose defaults pick camera, VR, env, scene, robot, task and recorder
groups, and ask for hydra's colorlog plugin), and the module itself by stand-ins in sys.modules.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

from envs.calvin_config import (
    CalvinConfigError,
    compose_calvin_config,
    compose_overrides,
    evaluation_config,
    find_calvin_env_root,
    tactile_cameras,
    write_calvin_config,
)

TACTILE = {"_target_": "calvin_env.camera.tactile_sensor.TactileSensor", "name": "tactile", "width": 120}
STATIC = {"_target_": "calvin_env.camera.static_camera.StaticCamera", "name": "static", "width": 200}
GRIPPER = {"_target_": "calvin_env.camera.gripper_camera.GripperCamera", "name": "gripper", "width": 84}


def _write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))


def fake_calvin_env_root(root: Path) -> Path:
    conf = root / "conf"
    _write(
        conf / "config_data_collection.yaml",
        "seed: 0\nuse_vr: true\ndata_path: data\nsave_dir: /tmp\nrecord: true\n"
        "hydra:\n  run:\n    dir: ${save_dir}/${now:%Y-%m-%d}\n"
        "defaults:\n  - cameras: no_cameras\n  - vr_input: vr_input\n  - env: play_table_env\n"
        "  - scene: calvin_scene_D\n  - robot: panda_longer_finger\n  - tasks: new_playtable_tasks\n"
        "  - recorder: recorder\n"
        "  - override hydra/job_logging: colorlog\n  - override hydra/hydra_logging: colorlog\n",
    )
    _write(conf / "cameras" / "no_cameras.yaml", "{}\n")
    _write(
        conf / "cameras" / "static_and_gripper.yaml",
        "defaults:\n  - cameras@static: static\n  - cameras@gripper: gripper\n",
    )
    _write(
        conf / "cameras" / "static_gripper_tactile.yaml",
        "defaults:\n  - cameras@static: static\n  - cameras@gripper: gripper\n  - cameras@tactile: tactile\n",
    )
    for name, cam in (("static", STATIC), ("gripper", GRIPPER), ("tactile", TACTILE)):
        _write(conf / "cameras" / "cameras" / f"{name}.yaml", cam)
    _write(conf / "vr_input" / "vr_input.yaml", {"_target_": "calvin_env.io_utils.vr_input.VrInput"})
    _write(conf / "recorder" / "recorder.yaml", "record: ${record}\n")
    _write(
        conf / "env" / "play_table_env.yaml",
        "_target_: calvin_env.envs.play_table_env.PlayTableSimEnv\ncameras: ${cameras}\nuse_vr: ${use_vr}\n"
        "robot_cfg: ${robot}\nscene_cfg: ${scene}\n",
    )
    for scene in "ABCD":
        _write(conf / "scene" / f"calvin_scene_{scene}.yaml", f"name: {scene}\ndata_path: ${{data_path}}\n")
    _write(conf / "robot" / "panda_longer_finger.yaml", {"_target_": "calvin_env.robot.robot.Robot"})
    _write(conf / "tasks" / "new_playtable_tasks.yaml", {"_target_": "calvin_env.envs.tasks.Tasks", "tasks": {}})
    (root / "data").mkdir(parents=True, exist_ok=True)
    return root


# ---- envs.calvin_config: pure logic and composition -------------------------------------------


def test_evaluation_config_drops_data_collection_parts_and_points_at_the_data(tmp_path):
    composed = {
        "env": {"cameras": "${cameras}", "use_vr": "${use_vr}"},
        "cameras": {"static": STATIC},
        "scene": {"data_path": "${data_path}"},
        "robot": {},
        "vr_input": {"x": 1},
        "recorder": {"record": "${record}"},
        "hydra": {"run": {}},
        "use_vr": True,
        "record": True,
        "data_path": "data",
    }
    config = evaluation_config(composed, tmp_path / "data")
    assert not {"vr_input", "recorder", "hydra"} & set(config)
    assert config["data_path"] == str((tmp_path / "data").resolve()) and Path(config["data_path"]).is_absolute()
    assert config["use_vr"] is False and config["record"] is False
    assert config["env"]["cameras"] == "${cameras}", "interpolations stay for calvin_env to resolve"
    assert composed["use_vr"] is True and "vr_input" in composed, "the input is not modified"
    with pytest.raises(CalvinConfigError, match="lacks env"):
        evaluation_config({"cameras": {}, "scene": {}, "robot": {}}, tmp_path)


def test_tactile_cameras_are_found_by_their_sensor_class():
    assert tactile_cameras({"cameras": {"static": STATIC, "gripper": GRIPPER}}) == []
    assert tactile_cameras({"cameras": {"static": STATIC, "tactile": TACTILE}}) == ["tactile"]
    assert tactile_cameras({}) == []


def test_overrides_pick_scene_and_cameras_and_refuse_unknown_scenes():
    overrides = compose_overrides("B")
    assert "scene=calvin_scene_B" in overrides and "cameras=static_and_gripper" in overrides
    assert {"~vr_input", "~recorder"} <= set(overrides)
    with pytest.raises(ValueError, match="scene must be one of"):
        compose_overrides("E")


def test_composition_of_a_calvin_env_conf_tree(tmp_path):
    root = fake_calvin_env_root(tmp_path / "calvin_env")
    config = compose_calvin_config(root, scene="A")  # no hydra_colorlog needed
    assert set(config["cameras"]) == {"static", "gripper"} and tactile_cameras(config) == []
    assert config["cameras"]["static"]["_target_"] == STATIC["_target_"]
    assert config["scene"]["name"] == "A" and config["data_path"] == str((root / "data").resolve())
    assert not {"vr_input", "recorder", "hydra"} & set(config)
    assert config["env"]["cameras"] == "${cameras}"
    with_tactile = compose_calvin_config(root, cameras="static_gripper_tactile")
    assert tactile_cameras(with_tactile) == ["tactile"]


def test_calvin_env_root_is_checked(tmp_path, monkeypatch):
    root = fake_calvin_env_root(tmp_path / "calvin_env")
    assert find_calvin_env_root(root) == root.resolve()
    with pytest.raises(CalvinConfigError, match="not a calvin_env checkout"):
        find_calvin_env_root(tmp_path / "elsewhere")
    monkeypatch.setitem(sys.modules, "calvin_env", None)  # find_spec: "not installed"
    with pytest.raises(CalvinConfigError, match="calvin_env is not installed"):
        find_calvin_env_root()


def test_calvin_config_command_writes_the_file_calvin_env_reads(tmp_path, capsys):
    from emu3_vla.cli import main

    root = fake_calvin_env_root(tmp_path / "calvin_env")
    out = tmp_path / "calvin_conf"
    assert main(["eval", "calvin-config", "--out", str(out), "--calvin-env-root", str(root), "--scene", "C"]) == 0
    written = out / ".hydra" / "merged_config.yaml"
    assert written.is_file() and str(written) in capsys.readouterr().out
    config = yaml.safe_load(written.read_text())
    assert config["scene"]["name"] == "C" and set(config["cameras"]) == {"static", "gripper"}
    from envs.calvin_backend import config_folder

    assert config_folder(out) == out  # what --calvin-config accepts
    assert write_calvin_config(tmp_path / "again", root) == tmp_path / "again" / ".hydra" / "merged_config.yaml"


def test_calvin_config_command_without_calvin_env_explains(tmp_path, capsys):
    from emu3_vla.cli import main

    assert main(["eval", "calvin-config", "--out", str(tmp_path / "c"), "--calvin-env-root", str(tmp_path)]) == 1
    assert "not a calvin_env checkout" in capsys.readouterr().err


# ---- the command line: expert refused on calvin before anything is built ------------------------


def test_expert_is_refused_on_calvin_before_any_environment_is_built(tmp_path, monkeypatch, capsys):
    import eval.evaluate
    from emu3_vla.cli import main

    def no_env(*args, **kwargs):
        raise AssertionError("an environment was built")

    monkeypatch.setattr(eval.evaluate, "make_env", no_env)
    argv = ["eval", "calvin", "--backend", "calvin", "--policy", "expert", "--out", str(tmp_path / "o")]
    assert main([*argv, "--calvin-config", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "policy 'expert' cannot run on --backend calvin" in err and "--backend playtable" in err
    assert not (tmp_path / "o").exists()


def test_default_policy_depends_on_the_backend(capsys):
    from emu3_vla.cli import build_parser
    from eval.cli import _settings

    parser = build_parser()
    calvin = parser.parse_args(["eval", "calvin", "--backend", "calvin", "--calvin-config", "c", "--out", "o"])
    assert _settings(calvin).policy == "random" and _settings(calvin).calvin_dataset == "c"
    playtable = parser.parse_args(["eval", "tasks", "--out", "o"])
    assert _settings(playtable).policy == "expert"
    dataset = parser.parse_args(["eval", "calvin", "--backend", "calvin", "--calvin-dataset", "d", "--out", "o"])
    assert _settings(dataset).calvin_dataset == "d"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "calvin", "--help"])
    assert "'random' on --backend calvin" in " ".join(capsys.readouterr().out.split())


# ---- CalvinEnv with a stand-in calvin_env -----------------------------------------------------


class FakeSimEnv:
    """Closes like calvin_env's PlayTableSimEnv: close() disconnects, __del__ calls close() again,
    and a second disconnect fails."""

    def __init__(self):
        self.connected = True
        self.closes = 0

    def close(self):
        self.closes += 1
        if not self.connected:
            raise RuntimeError("Not connected to physics server.")
        print("disconnecting id 0 from server")
        self.connected = False

    def __del__(self):
        self.close()


@pytest.fixture
def fake_calvin(tmp_path, monkeypatch):
    """A calvin_env stand-in inside a git work tree; ``built`` records get_env calls."""
    package = tmp_path / "clone" / "calvin_env"
    package.mkdir(parents=True)
    (tmp_path / "clone" / ".git").mkdir()
    built = []

    def get_env(folder, show_gui=False):
        built.append(Path(folder))
        return FakeSimEnv()

    root = types.ModuleType("calvin_env")
    root.__file__ = str(package / "__init__.py")
    envs_mod = types.ModuleType("calvin_env.envs")
    play = types.ModuleType("calvin_env.envs.play_table_env")
    play.get_env = get_env
    for name, module in (("calvin_env", root), ("calvin_env.envs", envs_mod), ("calvin_env.envs.play_table_env", play)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tacto", None)  # the tactile sensor is not installed
    return types.SimpleNamespace(package=package, play=play, built=built)


def _config_folder(tmp_path: Path, cameras: dict) -> Path:
    folder = tmp_path / "conf_folder"
    _write(folder / ".hydra" / "merged_config.yaml", {"cameras": cameras, "env": {}, "scene": {}, "robot": {}})
    return folder


def test_missing_tacto_gives_the_install_hint_before_building(tmp_path, fake_calvin):
    from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

    folder = _config_folder(tmp_path, {"static": STATIC, "tactile": TACTILE})
    with pytest.raises(CalvinNotAvailable, match=r"tacto.*cameras=static_and_gripper.*emu3-vla eval calvin-config"):
        CalvinEnv(folder)
    assert fake_calvin.built == []


def test_a_tacto_failure_inside_hydra_becomes_the_install_hint(tmp_path, fake_calvin):
    from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

    def failing_get_env(folder, show_gui=False):  # as hydra wraps the error of a namespace-package tacto
        try:
            raise AttributeError("module 'tacto' has no attribute 'Sensor'")
        except AttributeError as err:
            raise RuntimeError("Error in call to target 'calvin_env.camera.tactile_sensor.TactileSensor'") from err

    fake_calvin.play.get_env = failing_get_env
    with pytest.raises(CalvinNotAvailable, match="cameras=static_and_gripper") as caught:
        CalvinEnv(_config_folder(tmp_path, {"static": STATIC}))
    assert "Traceback" not in str(caught.value)


def test_calvin_env_outside_a_git_clone_is_explained(tmp_path, fake_calvin):
    from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

    (fake_calvin.package.parent / ".git").rmdir()
    with pytest.raises(CalvinNotAvailable, match="not inside a git clone"):
        CalvinEnv(_config_folder(tmp_path, {"static": STATIC}))


def test_a_folder_without_merged_config_is_explained(tmp_path, fake_calvin):
    from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

    with pytest.raises(CalvinNotAvailable, match="emu3-vla eval calvin-config"):
        CalvinEnv(tmp_path / "empty")


def test_close_disconnects_once_and_the_finaliser_does_nothing(tmp_path, fake_calvin, capsys):
    from envs.calvin_backend import CalvinEnv

    env = CalvinEnv(_config_folder(tmp_path, {"static": STATIC, "gripper": GRIPPER}))
    sim = env.env
    assert fake_calvin.built == [tmp_path / "conf_folder"]
    env.close()
    env.close()  # a second close of ours is a no-op too
    sim.__del__()  # what the interpreter calls at exit: no second disconnect, nothing raised
    assert sim.closes == 1 and not sim.connected
    assert "disconnecting" not in capsys.readouterr().out


def test_a_missing_requirement_of_calvin_env_is_named(tmp_path, monkeypatch):
    from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

    package = tmp_path / "clone" / "calvin_env"  # a stand-in whose env module imports numpy-quaternion
    (package / "envs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "envs" / "__init__.py").write_text("")
    (package / "envs" / "play_table_env.py").write_text("import quaternion\n")
    monkeypatch.syspath_prepend(str(tmp_path / "clone"))
    for name in ("calvin_env", "calvin_env.envs", "calvin_env.envs.play_table_env"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "quaternion", None)
    with pytest.raises(CalvinNotAvailable, match="needs 'numpy-quaternion'"):
        CalvinEnv(tmp_path)
    for name in ("calvin_env", "calvin_env.envs", "calvin_env.envs.play_table_env"):
        sys.modules.pop(name, None)  # the stand-in must not outlive this test
