"""A music21 score as a NoteSequence without the MIDI round trip: what music21's MIDI writer
plays (repeats expanded, ties joined, tempo marks, realized velocities) read off the score.

music21's MIDI writer (`midi.translate`) deep-copies the score, strips ties, writes MIDI bytes
that note_seq/pretty_midi then parse back: three quarters of the corpus catalog's time
(`python -m benchmarks.catalog_profile`). This walks the score once instead. It follows the
writer's rules: the first MetronomeMark at each offset (scanned part by part, later offsets
only, as `translate.conductorStream`) sets the tempo, 120 quarter notes a minute without one;
each note's velocity is `round(volume.cachedRealized * 127)` after `volume.realizeVolume` of
its part (a chord's component volumes when it has them); tied notes of one pitch are one note;
unpitched (drum) notes are left out. `tests/envs/music/test_score_notes.py` checks it against
the writer on corpus files.
"""

from __future__ import annotations

import bisect

from note_seq import music_pb2

DEFAULT_QPM = 120.0  # music21's conductor default


def has_repeats(score) -> bool:
    """Whether expanding repeats can change the score (repeat barlines, brackets, da capo...)."""
    from music21 import bar, repeat, spanner

    if score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatExpression)).first() is not None:
        return True
    return any(isinstance(s, spanner.RepeatBracket) for s in score.spannerBundle)


class TempoMap:
    """Quarter-length offsets to seconds, from (offset, quarter notes per minute) marks."""

    def __init__(self, marks: list[tuple[float, float]]) -> None:
        marks = sorted(marks) or [(0.0, DEFAULT_QPM)]
        if marks[0][0] > 0:
            marks.insert(0, (0.0, DEFAULT_QPM))
        self.offsets = [o for o, _ in marks]
        self.qpm = [q for _, q in marks]
        self.seconds = [0.0]
        for i in range(1, len(marks)):
            self.seconds.append(self.seconds[-1] + (self.offsets[i] - self.offsets[i - 1]) * 60.0 / self.qpm[i - 1])

    def __call__(self, offset: float) -> float:
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self.seconds[i] + (offset - self.offsets[i]) * 60.0 / self.qpm[i]


def tempo_map(score) -> TempoMap:
    from music21 import tempo

    marks: list[tuple[float, float]] = []
    last = -1.0
    for mark in score[tempo.MetronomeMark]:  # the writer's order: part by part, later offsets only
        offset = float(mark.getOffsetInHierarchy(score))
        if offset <= last:
            continue
        last = offset
        if mark.number is None and mark.numberSounding is None:
            continue  # a text-only mark: the writer emits no tempo event
        qpm = mark.getSoundingMetronomeMark().getQuarterBPM()
        if qpm:
            marks.append((offset, float(qpm)))
    return TempoMap(marks)


def score_to_sequence(score) -> music_pb2.NoteSequence:
    """The notes of a (cleaned, repeat-expanded) score, in seconds; see the module docstring."""
    from music21 import chord, note, stream, volume

    seconds = tempo_map(score)
    parts = list(score.getElementsByClass(stream.Stream)) or [score]
    seq = music_pb2.NoteSequence()
    seq.ticks_per_quarter = 10080  # music21's MIDI resolution, for readers that want ticks
    for part_index, part in enumerate(parts):
        volume.realizeVolume(part)
        part_offset = float(part.getOffsetInHierarchy(score)) if part is not score else 0.0
        open_ties: dict[int, music_pb2.NoteSequence.Note] = {}  # pitch -> note a tie continues
        for element in part.flatten().notes:
            if isinstance(element, chord.Chord):
                components = [c for c in element.notes if isinstance(c, note.Note)]
                component_volumes = element.hasComponentVolumes()
            elif isinstance(element, note.Note):
                components, component_volumes = [element], True
            else:  # Unpitched, PercussionChord: drums
                continue
            start_ql = part_offset + float(element.offset)
            end_ql = start_ql + float(element.duration.quarterLength)
            start, end = seconds(start_ql), seconds(end_ql)
            for component in components:
                pitch = int(component.pitch.midi)
                tie = component.tie if component.tie is not None else element.tie
                kind = tie.type if tie is not None else None
                previous = open_ties.get(pitch)
                # A tie continues the note of its pitch that ends where it starts (as stripTies).
                if kind in ("stop", "continue") and previous is not None and abs(previous.end_time - start) < 1e-6:
                    previous.end_time = max(previous.end_time, end)
                    if kind == "stop":
                        del open_ties[pitch]
                    continue
                realized = (component.volume if component_volumes else element.volume).cachedRealized
                n = seq.notes.add(pitch=pitch, velocity=int(round(realized * 127)), start_time=start,
                                  end_time=end, instrument=part_index, is_drum=False)
                if kind in ("start", "continue"):
                    open_ties[pitch] = n
                else:
                    open_ties.pop(pitch, None)
    seq.total_time = max((n.end_time for n in seq.notes), default=0.0)
    for offset, qpm in zip(seconds.seconds, seconds.qpm):
        seq.tempos.add(time=offset, qpm=qpm)
    return seq
