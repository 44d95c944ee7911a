"""Command-line pieces every ``emu3-vla`` sub-command shares, importable without torch.

``emu3-vla --help`` builds every sub-command's parser; if building one imported torch or
transformers, every ``--help`` would pay seconds for it. So the names a parser offers as choices
live here, next to the argument helpers, and the heavy modules import them from here
(``emu3_vla.vla.DECODERS`` is :data:`DECODER_NAMES`); ``tests/test_cli.py`` checks that the preset
names agree with :data:`emu3_vla.presets.PRESETS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: Model presets (``emu3_vla.presets.PRESETS``).
PRESET_NAMES = ("tiny", "small", "emu3-1b", "emu3-8b")
#: Action decoding engines: plain (the KV-cached loop), static / parallel (the fast decoder, same tokens).
DECODER_NAMES = ("plain", "static", "parallel")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
#: Classifier-free guidance scale of visual generation (``emu3_vla.generation.tasks``).
DEFAULT_GUIDANCE_SCALE = 3.0


def add_device_argument(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    p.add_argument("--device", default=default, help="torch device: cpu, cuda, cuda:1 ... (default: %(default)s)")


def add_dtype_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="decoder dtype (default: the checkpoint's)")


def add_decoder_argument(p: argparse.ArgumentParser, default: str | None = "plain") -> None:
    p.add_argument(
        "--decoder",
        choices=DECODER_NAMES,
        default=default,
        help="action decoding: plain (KV-cached loop) or the fast decoder's static / parallel modes, which give "
        f"the same actions faster (default: {default or 'plain'})",
    )


def add_camera_sizes_argument(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A ``STATIC GRIPPER`` pair of square camera sizes in pixels (e.g. CALVIN's ``200 84``)."""
    p.add_argument(flag, nargs=2, type=int, metavar=("STATIC", "GRIPPER"), help=help)


def add_hydra_arguments(p: argparse.ArgumentParser) -> None:
    """``key=value`` overrides of the command's config and ``--print-config``."""
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str = "",
) -> argparse.ArgumentParser:
    """One sub-command: its parser (``--help`` shows ``description``, else ``help``) and the function it runs."""
    parser = sub.add_parser(
        name, help=help, description=description or help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(func=run)
    return parser
