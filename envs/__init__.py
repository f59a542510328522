"""pianoset: the simulated piano task (RP1M env, OT fingering, songs, chunks, metrics)."""
