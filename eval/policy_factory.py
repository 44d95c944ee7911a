"""Build a policy from a command-line spec, in whichever process needs it.

* ``expert`` — the scripted experts (privileged; PlayTable only);
* ``random`` — uniform random actions (the floor);
* ``remote://host:port`` — a policy served by ``emu3-vla serve``;
* anything else — a trained VLA checkpoint folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_policy(
    spec: str, *, device: str = "cpu", execute_steps: int | None = None, seed: int = 0, decoder: str | None = None
) -> Any:
    if spec == "random":
        from policies.base import RandomPolicy

        return RandomPolicy(seed=seed)
    if spec == "expert":
        from policies.experts import ScriptedExpert

        return ScriptedExpert(seed=seed)
    if spec.startswith("remote://"):
        from policies.client import policy_from_uri

        return policy_from_uri(spec)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"policy {spec!r} is neither 'expert', 'random', remote://host:port nor an existing checkpoint folder"
        )
    from policies.emu3_policy import Emu3VLAPolicy

    kwargs: dict[str, Any] = {"device": device, "execute_steps": execute_steps}
    if decoder:
        kwargs["decoder"] = decoder
    return Emu3VLAPolicy.from_checkpoint(path, **kwargs)
