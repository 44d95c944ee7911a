"""The demo's cached stages: a finished stage is skipped, an interrupted resumable one continues its own
partial output, and a stage whose settings changed starts again without destroying the old output."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from eval.demo.stages import Stage


def _work(folder, log: list[str], name: str = "out.txt", fail: bool = False):
    def work():
        log.append("ran")
        (folder / name).write_text("partial" if fail else "done")
        if fail:
            raise KeyboardInterrupt("killed mid-stage")
        return {"value": 1}

    return work


def test_finished_stage_is_cached(tmp_path):
    log: list[str] = []
    stage = Stage("s", tmp_path / "s", {"steps": 10})
    assert stage.run(_work(stage.folder, log)) == {"value": 1}
    again = Stage("s", tmp_path / "s", {"steps": 10})
    assert again.done() and again.run(_work(again.folder, log)) == {"value": 1}
    assert log == ["ran"]


def test_interrupted_resumable_stage_keeps_its_partial_output(tmp_path):
    log: list[str] = []
    stage = Stage("train", tmp_path / "train", {"steps": 10})
    with pytest.raises(KeyboardInterrupt):
        stage.run(_work(stage.folder, log, name="checkpoint", fail=True), resumable=True)
    assert not stage.done()

    seen: list[bool] = []

    def resume():
        seen.append((stage.folder / "checkpoint").is_file())
        return {"value": 2}

    assert Stage("train", tmp_path / "train", {"steps": 10}).run(resume, resumable=True) == {"value": 2}
    assert seen == [True], "the resumed stage must find the checkpoint its killed attempt wrote"


def test_changed_settings_rerun_and_keep_the_old_output_aside(tmp_path):
    log: list[str] = []
    old = Stage("train", tmp_path / "train", {"steps": 10})
    with pytest.raises(KeyboardInterrupt):
        old.run(_work(old.folder, log, name="checkpoint", fail=True), resumable=True)

    new = Stage("train", tmp_path / "train", {"steps": 10, "new_key": 0})
    assert new.key != old.key
    seen: list[bool] = []

    def work():
        seen.append((new.folder / "checkpoint").exists())
        return {}

    new.run(work, resumable=True)
    assert seen == [False], "another key's partial output must not be resumed"
    previous = tmp_path / "train.previous"
    assert (previous / "checkpoint").read_text() == "partial", "the old output must be kept, not deleted"
    assert new.done()


def test_interrupted_stage_that_cannot_resume_starts_over_and_keeps_the_previous_generation(tmp_path, capsys):
    """Settings A finish; settings B set A's output aside, are killed, and run again: A's finished
    output must survive in .previous (B's fragment is what gets removed)."""
    log: list[str] = []
    first = Stage("collect", tmp_path / "data", {"episodes": 10})
    first.run(_work(first.folder, log))
    second = Stage("collect", tmp_path / "data", {"episodes": 20})
    with pytest.raises(KeyboardInterrupt):
        second.run(_work(second.folder, log, fail=True))
    previous = tmp_path / "data.previous"
    assert (previous / "out.txt").read_text() == "done"

    seen: list[bool] = []

    def work():
        seen.append((second.folder / "out.txt").exists())
        return {}

    Stage("collect", tmp_path / "data", {"episodes": 20}).run(work)
    assert seen == [False], "a stage that cannot resume starts from an empty folder"
    assert (previous / "out.txt").read_text() == "done", "the finished earlier output must not be replaced"
    out = capsys.readouterr().out
    assert "the last attempt was interrupted; starting it over" in out


def test_an_upstream_change_invalidates_downstream_stages(tmp_path):
    data_a = Stage("data", tmp_path / "data", {"episodes": 10})
    data_b = Stage("data", tmp_path / "data", {"episodes": 20})
    train_a = Stage("train", tmp_path / "train", {"steps": 5}, [data_a])
    train_b = Stage("train", tmp_path / "train", {"steps": 5}, [data_b])
    assert train_a.key != train_b.key
    train_a.run(lambda: {"x": 1})
    assert train_a.done() and not train_b.done()


def test_stage_keys_ignore_an_unset_data_option_added_later(tmp_path):
    """Options added after run folders were made (``data.repeats``, ``vq.frame_sampling``) must not redo a
    finished VQ tokenizer or training run of an older folder while they do what it did (unset, or
    ``start``); set otherwise, they are part of the keys."""
    from emu3_vla.training.config import load_config
    from eval.demo.pipeline import Run, train_stage, vq_stage

    cfg = load_config("demo", [f"run_dir={tmp_path}"])
    upstream = Stage("collect", tmp_path / "data", {"seed": 0})

    def keys() -> tuple[str, str]:
        run = Run.create(cfg)
        return vq_stage(run, upstream).key, train_stage(run, [upstream])[0].key

    vq_key, train_key = keys()
    vq_before = OmegaConf.to_container(cfg.vq, resolve=True)
    train_before = OmegaConf.to_container(cfg.train, resolve=True)
    train_before["run_dir"] = str(tmp_path / "train_main")
    for settings in (vq_before, train_before):
        settings.pop("progress")
        del settings["data"]["repeats"]
    assert vq_before.pop("frame_sampling") == "start"
    assert vq_key == Stage("train VQ tokenizer", tmp_path / "vq", vq_before, [upstream]).key
    assert train_key == Stage("train VLA (main)", tmp_path / "train_main", train_before, [upstream]).key

    cfg.vq.frame_sampling = "spread"
    assert keys()[0] != vq_key
    cfg.vq.frame_sampling = "start"
    cfg.train.data.repeats = [1, 2]
    assert all(new != old for new, old in zip(keys(), (vq_key, train_key), strict=True))
