"""What a request to the policy server may contain, and how it is checked.

A request is one msgpack map (openpi style, flat keys)::

    {
        "prompt": "open the drawer",                       # the instruction (str)
        "observation/image": uint8 (H, W, 3),              # camera view "static"
        "observation/wrist_image": uint8 (H, W, 3),        # camera view "gripper"
        "observation/state": float (15,),                  # required by models trained with state tokens
        "reset": True,                                     # optional: start a new episode first
    }

Token mode (the Emu3 paper's edge tokenisation): instead of pixels a client may send the VQ codes
of a view, ``"observation/image_tokens": int (h, w)``, computed on its own device with the served
checkpoint's VQ tokenizer; the server then skips its VQ pass for that view. Views other than
``static`` / ``gripper`` use ``observation/<view>_image`` and ``observation/<view>_image_tokens``.
The server's metadata (sent on connect) lists every key, image size and code shape.

A map holding only ``{"reset": True}`` resets the connection's episode and is answered with
``{"reset": True}``. Unknown keys are ignored, so openpi clients that send extra fields still work.
Anything else wrong raises :class:`RequestError` with a message meant to be read by the client's
author: which key, what was expected, what arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from emu3_vla.views import ViewSpec

PROMPT_KEY = "prompt"
RESET_KEY = "reset"
STATE_KEY = "observation/state"
DEFAULT_IMAGE_KEYS = {"static": "observation/image", "gripper": "observation/wrist_image"}
TOKENS_SUFFIX = "_tokens"


class RequestError(ValueError):
    """A request the server cannot act on; the message says what to change."""


def image_key(view: str) -> str:
    """The request key carrying a view's pixels (openpi's names for CALVIN's two cameras)."""
    return DEFAULT_IMAGE_KEYS.get(view, f"observation/{view}_image")


def tokens_key(view: str) -> str:
    """The request key carrying a view's VQ codes in token mode."""
    return image_key(view) + TOKENS_SUFFIX


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask the model to process."""

    max_image_side: int = 1024
    max_prompt_chars: int = 1000


@dataclasses.dataclass
class ServedObservation:
    """One checked observation: per view either pixels ``(H, W, 3) uint8`` or codes ``(h, w) int64``."""

    pixels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    codes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    state: np.ndarray | None = None  # float32 (D,), only for a model that reads state


@dataclasses.dataclass
class Request:
    reset: bool
    prompt: str | None = None
    observation: ServedObservation | None = None


class RequestFormat:
    """Checks requests against the served model's camera views and VQ codebook."""

    def __init__(
        self,
        views: Mapping[str, ViewSpec],
        codebook_size: int,
        *,
        spatial_factor: int = 8,
        limits: Limits | None = None,
        state_size: int | None = None,
    ) -> None:
        """``state_size``: the least length of ``observation/state`` a model that reads state needs
        (its highest state index + 1); ``None`` for a model that reads images only."""
        self.state_size = state_size
        self.views = dict(views)
        self.codebook_size = int(codebook_size)
        self.spatial_factor = int(spatial_factor)
        self.limits = limits or Limits()

    def code_shape(self, view: str) -> tuple[int, int]:
        return self.views[view].code_shape(self.spatial_factor)

    def describe(self) -> dict[str, Any]:
        """The part of the server metadata that tells a client how to build requests."""
        return {
            "prompt_key": PROMPT_KEY,
            "reset_key": RESET_KEY,
            "state_key": STATE_KEY,
            "state_used": self.state_size is not None,
            "views": {
                name: {
                    "image_key": image_key(name),
                    "tokens_key": tokens_key(name),
                    "image_size": [spec.height, spec.width],
                    "code_shape": list(self.code_shape(name)),
                }
                for name, spec in self.views.items()
            },
            "codebook_size": self.codebook_size,
            "max_image_side": self.limits.max_image_side,
            "max_prompt_chars": self.limits.max_prompt_chars,
        }

    # ------------------------------------------------------------------ parse
    def parse(self, message: Any) -> Request:
        if not isinstance(message, dict):
            raise RequestError(
                f"a request must be a msgpack map (a dict of observation keys), got {type(message).__name__}"
            )
        bad_keys = [k for k in message if not isinstance(k, str)]
        if bad_keys:
            raise RequestError(f"request keys must be strings, got {bad_keys[:3]!r}")
        reset = message.get(RESET_KEY, False)
        if not isinstance(reset, bool):
            raise RequestError(f"'{RESET_KEY}' must be true or false, got {type(reset).__name__}")
        observation_keys = {PROMPT_KEY} | {image_key(v) for v in self.views} | {tokens_key(v) for v in self.views}
        if reset and not observation_keys & message.keys():
            return Request(reset=True)
        prompt = self._prompt(message)
        observation = ServedObservation()
        for view in self.views:
            pixels, codes = message.get(image_key(view)), message.get(tokens_key(view))
            if pixels is not None and codes is not None:
                raise RequestError(
                    f"send either '{image_key(view)}' (pixels) or '{tokens_key(view)}' (VQ codes) for view "
                    f"{view!r}, not both"
                )
            if codes is not None:
                observation.codes[view] = self._codes(view, codes)
            elif pixels is not None:
                observation.pixels[view] = self._image(view, pixels)
            else:
                h, w = self.code_shape(view)
                raise RequestError(
                    f"missing camera view {view!r}: send '{image_key(view)}' as a uint8 (H, W, 3) RGB array or "
                    f"'{tokens_key(view)}' as integer VQ codes of shape ({h}, {w}) "
                    f"(present keys: {sorted(message)})"
                )
        if self.state_size is not None:
            observation.state = self._state(message.get(STATE_KEY))
        return Request(reset=reset, prompt=prompt, observation=observation)

    def _state(self, value: Any) -> np.ndarray:
        if value is None:
            raise RequestError(
                f"missing '{STATE_KEY}': this model reads the robot's proprioceptive state; send it as a float "
                f"array of at least {self.state_size} values (CALVIN: the 15-d robot_obs)"
            )
        if not isinstance(value, np.ndarray) and not isinstance(value, list | tuple):
            raise RequestError(f"'{STATE_KEY}' must be a float array, got {type(value).__name__}")
        try:
            state = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise RequestError(f"'{STATE_KEY}' must hold numbers") from None
        if state.size < self.state_size:
            raise RequestError(
                f"'{STATE_KEY}' has {state.size} values but the model reads index {self.state_size - 1}; "
                "send the same state vector the model was trained on (CALVIN: the 15-d robot_obs)"
            )
        if not np.all(np.isfinite(state)):
            raise RequestError(f"'{STATE_KEY}' contains NaN or infinite values")
        return state

    def _prompt(self, message: dict) -> str:
        if PROMPT_KEY not in message:
            raise RequestError(f"missing '{PROMPT_KEY}': the language instruction as a string, e.g. 'open the drawer'")
        prompt = message[PROMPT_KEY]
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(f"'{PROMPT_KEY}' must be a non-empty string, got {prompt!r:.60}")
        if len(prompt) > self.limits.max_prompt_chars:
            raise RequestError(
                f"'{PROMPT_KEY}' has {len(prompt)} characters; at most {self.limits.max_prompt_chars} are accepted"
            )
        return prompt

    def _image(self, view: str, value: Any) -> np.ndarray:
        key = image_key(view)
        if not isinstance(value, np.ndarray):
            raise RequestError(f"'{key}' must be a numpy array (msgpack __ndarray__ map), got {type(value).__name__}")
        if value.dtype != np.uint8:
            raise RequestError(
                f"'{key}' must be uint8 RGB (H, W, 3), got dtype {value.dtype}; "
                "convert float images in [0, 1] with (img * 255).round().astype(np.uint8)"
            )
        if value.ndim != 3 or value.shape[2] != 3:
            hint = " (channels first? use img.transpose(1, 2, 0))" if value.ndim == 3 and value.shape[0] == 3 else ""
            raise RequestError(f"'{key}' must have shape (H, W, 3), got {value.shape}{hint}")
        side = self.limits.max_image_side
        if not (0 < value.shape[0] <= side and 0 < value.shape[1] <= side):
            size = self.views[view]
            raise RequestError(
                f"'{key}' is {value.shape[0]}x{value.shape[1]}; the server accepts 1..{side} pixels a side "
                f"(the model sees {size.height}x{size.width}, so resizing before sending also saves bandwidth)"
            )
        return value

    def _codes(self, view: str, value: Any) -> np.ndarray:
        key = tokens_key(view)
        shape = self.code_shape(view)
        if not isinstance(value, np.ndarray):
            raise RequestError(f"'{key}' must be a numpy array (msgpack __ndarray__ map), got {type(value).__name__}")
        if value.dtype.kind not in "iu":
            raise RequestError(f"'{key}' must hold integer VQ codes, got dtype {value.dtype}")
        if value.shape != shape:
            raise RequestError(
                f"'{key}' must have shape {shape} (the {view!r} view's code grid), got {value.shape}; "
                "tokenize the view at the image size listed in the server metadata"
            )
        if value.size and (int(value.min()) < 0 or int(value.max()) >= self.codebook_size):
            raise RequestError(
                f"'{key}' holds codes in [{int(value.min())}, {int(value.max())}] but the codebook has "
                f"{self.codebook_size} entries; tokenize with the served checkpoint's VQ tokenizer"
            )
        return value.astype(np.int64)
