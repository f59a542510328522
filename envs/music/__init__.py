"""Music data: songs and their sources (`songs`, `scores` for the music21 corpus), the catalog
(`catalog`, built by `catalog_build`) and RP1M chunking (`chunks`). Imports: envs.atomic only."""
