"""Integer DCT coefficients <-> strings, one character per coefficient.

The BPE stage works on text, so each rounded coefficient becomes one character. Two schemes:

``zigzag`` (ours)
    Zig-zag order (0, -1, 1, -2, 2, ... -> code points 0, 1, 2, 3, 4, ...). Coefficients cluster
    around zero, so the common values |v| < 64 become code points below 128, i.e. one UTF-8 byte
    each, and only the rare large low-frequency terms take two bytes. Code points never reach the
    UTF-16 surrogate block, and U+FFFD (what a byte-level decoder emits for broken UTF-8) is never
    a valid code, so it reliably marks damage.

``shifted`` (the public FAST processor)
    ``chr(v - min_token)``, clamped below at 0. The most common value 0 lands at ``-min_token``,
    typically above 127, so most coefficients cost two bytes before BPE even starts.

Strings are built and parsed through UTF-32 buffers so that a whole batch converts in a few numpy
calls instead of a Python loop over coefficients.
"""

from __future__ import annotations

import numpy as np

#: Character a lossy UTF-8 decoder substitutes for bytes that do not form a character.
REPLACEMENT_CODE = 0xFFFD
#: Largest code point either scheme may produce: the UTF-16 surrogates start at U+D800.
MAX_CODE = 0xD7FF


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed integers -> non-negative codes: 0, -1, 1, -2, 2, ... -> 0, 1, 2, 3, 4, ..."""
    v = np.asarray(values, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    c = np.asarray(codes, dtype=np.int64)
    return np.where(c % 2 == 0, c // 2, -(c + 1) // 2)


def codes_to_strings(codes: np.ndarray) -> list[str]:
    """Code points (N, L) -> N strings of L characters each."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"expected codes of shape (N, L), got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() > MAX_CODE):
        raise ValueError(
            f"coefficient code {int(codes.max())} does not fit one character below U+D800; "
            "the scale is too large for this data (lower it or normalise the actions to [-1, 1])"
        )
    n, length = codes.shape
    text = codes.astype("<u4").tobytes().decode("utf-32-le")
    return [text[i * length : (i + 1) * length] for i in range(n)]


def strings_to_codes(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (all code points concatenated, number of code points per string)."""
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").astype(np.int64)
    return codes, lengths


class ZigZagCharacters:
    """Our scheme: one zig-zag code point per coefficient (see module docstring)."""

    name = "zigzag"

    def to_codes(self, values: np.ndarray) -> np.ndarray:
        return zigzag(values)

    def to_values(self, codes: np.ndarray) -> np.ndarray:
        return unzigzag(codes)

    def max_code(self, low: int, high: int) -> int:
        """Largest code point any value in [low, high] maps to."""
        return int(max(zigzag(np.array([low, high]))))


class ShiftedCharacters:
    """The public FAST processor's scheme: ``chr(max(v - min_token, 0))``."""

    name = "shifted"

    def __init__(self, min_token: int) -> None:
        self.min_token = int(min_token)

    def to_codes(self, values: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(values, dtype=np.int64) - self.min_token, 0)

    def to_values(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.int64) + self.min_token

    def max_code(self, low: int, high: int) -> int:
        return int(high) - self.min_token
