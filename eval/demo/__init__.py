"""``emu3-vla demo``: the whole pipeline on CPU defaults, every stage cached (:mod:`.pipeline`)."""
