"""Build the small byte-level BPE that the CPU presets use as their text tokenizer.

Real Emu3 checkpoints bring their own 151,643-id Qwen tokenizer. The presets need a text
tokenizer too, and nothing may be downloaded, so the package ships one: 1,024 BPE ids trained on
CALVIN's instruction paraphrases and task names, which is the text a robot policy and the demo's
caption/image domain actually see. Byte-level, so any string still encodes.

Run from the repository root to regenerate ``emu3_vla/assets/text_bpe.json``::

    python -m emu3_vla.assets.build_text_bpe
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BPE_SIZE = 1024  # upper bound: the ids below the 1,024 action ids of the presets
OUT = Path(__file__).with_name("text_bpe.json")
CALVIN_DATA = Path(__file__).resolve().parents[2] / "envs" / "calvin_data"


def corpus() -> list[str]:
    """Instruction paraphrases, task names and the numerals used in vision meta text."""
    lines: list[str] = []
    for name in ("training_instructions.yaml", "validation_instructions.yaml"):
        table = yaml.safe_load((CALVIN_DATA / name).read_text())
        for task, sentences in table.items():
            lines.append(task.replace("_", " "))
            lines.extend(sentences)
    lines.extend(f"{h}*{w}" for h in range(1, 65) for w in range(1, 65) if h % 5 == 0 or h < 16)
    lines.extend(
        [
            "a robot arm on a wooden desk with a drawer, a sliding cabinet, a button and a switch",
            "the red block, the blue block and the pink block",
            "what task is the robot doing?",
            "the robot is",
        ]
    )
    return lines


def build() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus() * 4, trainer=trainer)
    size = tok.get_vocab_size()
    if size > BPE_SIZE:
        raise RuntimeError(f"BPE came out with {size} ids, expected at most {BPE_SIZE}")
    return tok


def main() -> None:
    tok = build()
    OUT.write_text(json.dumps(json.loads(tok.to_str()), indent=None, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} with {tok.get_vocab_size()} ids")


if __name__ == "__main__":
    main()
