"""Where the catalog build's time goes, per music21 corpus file: parse, the MIDI writer, note_seq, rows.

    python -m benchmarks.catalog_profile [--files N] [--biggest] [--json]

Times (process CPU seconds) of each stage of `envs.music.scores.load_music21_file` +
`envs.music.catalog.row_for_song`, on a sample of corpus files (every k-th file by size, or the
N biggest), for both renderings of a score: `midi` (music21's MIDI writer
`translate.music21ObjectToMidiFile` + `writestr`, then note_seq's MIDI reader: the baseline) and
`notes` (`envs.music.score_notes`, the default). Stages: music21 `converter.parse`, the writer,
note_seq, score_notes, repeat expansion, and the catalog row (validation, polyphony, chunking).
Prints each stage's share and the notes/midi ratio of the whole conversion of the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script


@contextlib.contextmanager
def _patched(module, name, bucket, totals):
    original = getattr(module, name)

    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            totals[bucket] += time.process_time() - start

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def profile_file(path, totals, via: str) -> dict:
    from music21 import converter, stream
    from music21.midi import translate
    from note_seq import midi_io

    from envs.music import catalog, scores

    start = time.process_time()
    n_rows = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(converter, "parse", "parse", totals))
        stack.enter_context(_patched(translate, "music21ObjectToMidiFile", "midi_writer", totals))
        stack.enter_context(_patched(midi_io, "midi_to_note_sequence", "note_seq", totals))
        stack.enter_context(_patched(scores, "score_to_sequence", "score_notes", totals))
        stack.enter_context(_patched(stream.Score, "expandRepeats", "expand repeats (notes)", totals))
        results = scores.load_music21_file(str(path), via=via)
    loaded = time.process_time()
    for _, result in results:
        if not isinstance(result, Exception):
            catalog.row_for_song(result)
        n_rows += 1
    totals["rows (validate, chunks)"] += time.process_time() - loaded
    return {"file": str(path), "size": os.path.getsize(path), "rows": n_rows, "cpu_s": time.process_time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--biggest", action="store_true", help="the N biggest files instead of a spread by size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from envs.music.scores import music21_corpus_files

    files = sorted(music21_corpus_files(), key=lambda p: -p.stat().st_size)
    files = [f for f in files if f.suffix != ".rntxt"]
    sample = files[: args.files] if args.biggest else files[:: max(1, len(files) // args.files)][: args.files]
    report = {"files": len(sample)}
    for via in ("midi", "notes"):  # midi first: the baseline
        totals: dict[str, float] = defaultdict(float)
        per_file = [profile_file(p, totals, via) for p in sample]
        whole = sum(f["cpu_s"] for f in per_file)
        # the clean-up, writestr and song ids run inside the conversion but outside the patched calls
        totals["other (clean-up, writestr, song ids)"] = max(0.0, whole - sum(totals.values()))
        report[via] = {"cpu_s": round(whole, 2),
                       "stages": {k: {"cpu_s": round(v, 2), "share": round(v / whole, 3)} for k, v in totals.items()},
                       "slowest": sorted(per_file, key=lambda f: -f["cpu_s"])[:5]}
    report["ratio_notes_over_midi"] = round(report["notes"]["cpu_s"] / report["midi"]["cpu_s"], 3)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for via in ("midi", "notes"):
        print(f"via={via}: {len(sample)} files, {report[via]['cpu_s']:.1f} CPU s")
        for stage, v in report[via]["stages"].items():
            print(f"  {stage:40s} {v['cpu_s']:8.2f} s  {v['share']:.2f}")
        for f in report[via]["slowest"][:3]:
            print(f"  slowest: {f['cpu_s']:7.1f} s  {f['size'] // 1000:5d} KB  {f['rows']:3d} rows  {f['file']}")
    print(f"notes / midi (whole conversion, same files): {report['ratio_notes_over_midi']:.2f}")


if __name__ == "__main__":
    main()
