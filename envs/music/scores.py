"""Scores of the music21 corpus as songs: corpus paths and refs, music21's MIDI rendering of a
score (ties, repeats, tempo), ABC collections and voice files (the decisions are in `envs.music.songs`)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from note_seq import midi_io, music_pb2

from envs.music.score_notes import has_repeats, score_to_sequence
from envs.music.songs import MUSIC21_PREFIX, Song, SongError, make_song

logger = logging.getLogger(__name__)

# Corpus file kinds, preferred first when a ref leaves the extension out.
_MUSIC21_SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi")
_MUSIC21_ANALYSIS_SUFFIXES = (".rntxt",)


# Repeats (with first/second endings, da capo) play a passage two or three
# times; music21's expansion of some folk-tune repeat structures multiplies a
# 500-note reel into 50,000 notes (4.8 hours). Beyond this factor the tune is
# played once through instead.
MAX_REPEAT_EXPANSION = 4



def music21_corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def music21_corpus_files() -> list[Path]:
    """Every file of the corpus shipped inside music21, sorted."""
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getPaths())


def music21_ref(path: Path, number: str | None = None) -> str:
    rel = Path(path).resolve().relative_to(music21_corpus_root().resolve()).as_posix()
    return f"{MUSIC21_PREFIX}{rel}" + (f"#{number}" if number else "")


def _resolve_corpus_path(name: str) -> Path:
    root = music21_corpus_root()
    candidate = root / name
    if candidate.is_file():
        return candidate
    matches = sorted(
        p for p in candidate.parent.glob(candidate.name + ".*") if p.is_file()
    ) if candidate.parent.is_dir() else []
    order = _MUSIC21_SCORE_SUFFIXES + _MUSIC21_ANALYSIS_SUFFIXES
    matches = [p for p in matches if p.suffix.lower() in order]
    if not matches:
        raise SongError(f"{MUSIC21_PREFIX}{name}: no such file in the music21 corpus ({root})")
    return min(matches, key=lambda p: order.index(p.suffix.lower()))


@contextlib.contextmanager
def _quiet_music21():
    """music21 writes its warnings to stderr itself; keep them in the debug log."""
    buffer = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(buffer):
        warnings.simplefilter("ignore")
        yield
    if buffer.getvalue().strip():
        logger.debug("music21: %s", buffer.getvalue().strip()[:2000])


def _score_title(score, path: Path) -> str:
    """"Title: movement" from the score's metadata; the file stem when it has none."""
    md = score.metadata
    parts: list[str] = []
    if md is not None:
        for value in (md.title, md.movementName):
            text = str(value).strip() if value else ""
            if text in (path.name, path.stem):  # music21 fills in the file name
                text = ""
            if text and text not in parts:
                parts.append(text)
    return ": ".join(parts) or path.stem


def _dedupe_shared_elements(score) -> None:
    """Give each measure its own copy of a time/key signature or tempo object.

    music21's ABC reader sometimes puts one TimeSignature object in two
    measures, and its MIDI writer then fails ("already found in this Stream").
    """
    import copy

    from music21 import key, meter, tempo

    kinds = (meter.TimeSignature, key.KeySignature, tempo.TempoIndication)
    seen: set[int] = set()
    for container in list(score.recurse(streamsOnly=True, includeSelf=True)):
        for element in list(container.getElementsByClass(kinds)):  # direct children only
            if id(element) in seen:
                container.replace(element, copy.deepcopy(element))
            else:
                seen.add(id(element))


def _strip_repeats(score) -> None:
    """Remove repeat barlines, repeat brackets and da capo/segno marks (play once through)."""
    from music21 import bar, repeat, spanner

    for barline in list(score.recurse().getElementsByClass(bar.Repeat)):
        measure = barline.activeSite
        if measure is None or not hasattr(measure, "leftBarline"):
            continue
        if measure.leftBarline is barline:
            measure.leftBarline = None
        elif measure.rightBarline is barline:
            measure.rightBarline = bar.Barline("regular")
    for kind in (repeat.RepeatExpression, repeat.RepeatMark, spanner.RepeatBracket):
        for element in list(score.recurse().getElementsByClass(kind)):
            if element.activeSite is not None:
                element.activeSite.remove(element)


def _render(score, via: str) -> music_pb2.NoteSequence:
    """The score as performed: `via="notes"` read off the score (`envs.music.score_notes`, the
    default), `via="midi"` through music21's MIDI writer and note_seq's reader (4x slower)."""
    from music21 import stream

    if via == "midi":
        from music21.midi import translate

        return midi_io.midi_to_note_sequence(translate.music21ObjectToMidiFile(score).writestr())
    if via != "notes":
        raise ValueError(f"via={via!r}: expected 'notes' or 'midi'")
    if has_repeats(score) and score[stream.Measure]:
        score = score.expandRepeats()
    return score_to_sequence(score)


def _score_to_sequence(score, via: str = "notes") -> music_pb2.NoteSequence:
    """Render a score as performed (music21's MIDI writer's rules, `_render`); badly formed
    repeats (music21 cannot expand them) are dropped and the score is played once through."""
    from music21 import harmony, stream

    for element in list(score.recurse().getElementsByClass(harmony.Harmony)):
        site = element.activeSite
        if site is not None:
            site.remove(element)
    # Grace notes have no duration; the MIDI writer gives them a note-on and a
    # note-off at the same tick, and MIDI readers then keep them sounding until
    # the next release of that key (seconds later, 30 keys "down" at once).
    for element in list(score.recurse().notes):
        if element.duration.quarterLength == 0 and element.activeSite is not None:
            element.activeSite.remove(element)
    # Parts without notes (an ABC voice header with no music) make music21's
    # repeat expansion fail ("repeats on Stream that does not contain measures").
    for part in list(score.getElementsByClass(stream.Stream)):
        if not part.recurse().notes:
            score.remove(part)
    _dedupe_shared_elements(score)
    notated = sum(len(element.pitches) for element in score.recurse().notes)
    try:
        seq = _render(score, via)
        if notated and len(seq.notes) > MAX_REPEAT_EXPANSION * notated:
            raise ValueError(f"repeats expanded {notated} notated notes into {len(seq.notes)}")
    except Exception as exc:  # ExpanderException, RepeatException, the check above
        logger.debug("music21 MIDI writer failed (%s: %s); retrying without repeats", type(exc).__name__, exc)
        _strip_repeats(score)
        seq = _render(score, via)
    return seq


def _abc_tunes(path: Path) -> list[tuple[str, list[str]]]:
    """(X: number, T: titles) of each tune of an ABC file, without parsing the music."""
    tunes: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("X:"):
            tunes.append((line[2:].strip(), []))
        elif line.startswith("T:") and tunes:
            tunes[-1][1].append(line[2:].strip())
    return tunes


def _abc_voices_of_one_piece(tunes: list[tuple[str, list[str]]]) -> bool:
    """Whether the "tunes" are the voices of one piece: the same title, then a voice
    name for all but at most the first (T:Adieu mes amours / T:Cantus, T:Adieu mes
    amours / T:Altus ...). Folk collections also repeat a title (93 variants of
    one ballad), without voice names."""
    if len(tunes) < 2 or any(not titles for _, titles in tunes):
        return False
    firsts = {titles[0] for _, titles in tunes}
    voices = [titles[1] for _, titles in tunes if len(titles) > 1]
    return (
        len(firsts) == 1
        and "" not in firsts
        and len(voices) >= max(2, len(tunes) - 1)
        and len(set(voices)) == len(voices)
    )


def _collection_error(ref: str, numbers: list[str]) -> SongError:
    shown = ", ".join(numbers[:10]) + (", ..." if len(numbers) > 10 else "")
    return SongError(
        f"{ref}: a collection of {len(numbers)} tunes; name one as {ref}#<number> (numbers: {shown})"
    )


def load_music21_file(name: str | Path, *, _single: bool = False, via: str = "notes"
                      ) -> list[tuple[str, Song | SongError]]:
    """All songs of one corpus file, as (ref, Song or the SongError that describes it).

    `name` is a path relative to the corpus root (extension optional, ``#<n>``
    picks one tune of a collection) or an absolute path inside the corpus. A file
    holding one piece gives one entry; a tune collection gives one per tune. `via`: how a
    score becomes notes (`_render`).
    """
    from music21 import converter, stream

    spec = str(name)
    spec, _, number = spec.partition("#")
    if Path(spec).is_absolute():
        path = Path(spec)
        if not path.is_file():
            raise SongError(f"{spec}: no such file in the music21 corpus")
    else:
        path = _resolve_corpus_path(spec)
    base_ref = music21_ref(path)
    if path.suffix.lower() in _MUSIC21_ANALYSIS_SUFFIXES:
        return [(base_ref, SongError(f"{base_ref}: a roman-numeral analysis (.rntxt), not a playable score"))]
    # A quick look at ABC files: parsing a 300-tune book takes 20 s.
    abc_voices = False
    if path.suffix.lower() == ".abc" and not number:
        tunes = _abc_tunes(path)
        abc_voices = _abc_voices_of_one_piece(tunes)
        if _single and len(tunes) > 1 and not abc_voices:
            return [(base_ref, _collection_error(base_ref, [n for n, _ in tunes]))]
    try:
        with _quiet_music21():
            parsed = converter.parse(path, forceSource=True, number=int(number) if number else None)
    except Exception as exc:
        ref = base_ref + (f"#{number}" if number else "")
        return [(ref, SongError(f"{ref}: music21 could not parse it ({type(exc).__name__}: {exc})"))]

    scores: list[tuple[str, object]]
    if isinstance(parsed, stream.Opus):
        items = list(parsed.scores)
        if len(items) == 1 or abc_voices:  # voices of one piece (the Josquin ABC files)
            with _quiet_music21():
                merged = parsed.mergeScores() if len(items) > 1 else items[0]
            scores = [(base_ref, merged)]
        elif _single and not number:
            numbers = [str(s.metadata.number) for s in items if s.metadata is not None]
            return [(base_ref, _collection_error(base_ref, numbers))]
        else:
            scores = []
            seen: set[str] = set()
            for s in items:
                tune = str(s.metadata.number) if s.metadata is not None and s.metadata.number else ""
                if not tune or tune in seen:  # unnamed or duplicate X: numbers cannot be loaded again
                    logger.debug("%s: skipping a tune without a unique number (%r)", base_ref, tune)
                    continue
                seen.add(tune)
                scores.append((f"{base_ref}#{tune}", s))
    else:
        scores = [(base_ref + (f"#{number}" if number else ""), parsed)]

    results: list[tuple[str, Song | SongError]] = []
    for ref, score in scores:
        title = _score_title(score, path)
        try:
            with _quiet_music21():
                seq = _score_to_sequence(score, via)
        except Exception as exc:
            reason = f"{ref}: music21 could not render it as MIDI ({type(exc).__name__}: {exc})"
            results.append((ref, SongError(reason)))
            continue
        results.append((ref, make_song(seq, source="music21", title=title, ref=ref)))
    return results
