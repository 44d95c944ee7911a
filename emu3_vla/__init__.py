"""emu3-vla: the Emu3 next-token model as a vision-language-action policy.

The package's layers, lowest first (imports only point downwards):

* ``action_tokenizer`` (FAST) and ``envs`` (simulators) import nothing of ours;
* ``emu3_vla`` (this package): token layout, model wrappers, sequences, training, generation;
* ``policies``: closed-loop policies, scripted experts, policy server and client;
* ``eval``: CALVIN evaluation, data collection and the demo pipeline.
"""

__version__ = "0.1.0"
