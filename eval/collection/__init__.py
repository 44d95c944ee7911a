"""Scripted-expert demonstrations in PlayTable, written as a LeRobot dataset (``emu3-vla collect``).

* :mod:`.jobs` — what to run: start states, setup subtasks, single tasks and training chains;
* :mod:`.recorder` — one job in one environment, recorded subtask by subtask;
* :mod:`.pool` — worker processes that run jobs in parallel, results in job order;
* :mod:`.writers` — LeRobot v3.0 (and CALVIN's on-disk format) writers;
* :mod:`.collect` — the command: quotas per task, progress, ``collect_report.json``.
"""
