"""The `quality:` section of params.yaml: the fixed dev/holdout split and the reserved pieces."""

import re
from pathlib import Path

import pytest

from tasks.params import RESERVED_EVAL_PIECES, ParamsError, load_params, reserved_piece, validate_params

PROJECT = Path(__file__).resolve().parents[2]
BASE = {"collect": {"songs": ["x"]}}


def test_project_split_is_graded_large_enough_and_clean():
    quality = load_params(PROJECT / "params.yaml")["quality"]
    dev, holdout = quality["dev"], quality["holdout"]
    assert len(dev) + len(holdout) >= 12
    assert len(holdout) * 3 >= len(dev) + len(holdout)  # at least a third held out
    chunks = [(e["ref"], e["chunk"]) for e in dev + holdout]
    assert len(set(chunks)) == len(chunks)
    assert not [e["ref"] for e in dev + holdout if reserved_piece(e["ref"])]
    assert not {e["ref"] for e in dev} & {e["ref"] for e in holdout}  # no piece on both sides


@pytest.mark.parametrize("ref", ["music21:joplin/maple_leaf_rag.mxl", "music21:chopin/mazurka06-2",
                                 "music21:mozart/k545/movement1_exposition.mxl", "music21:cpebach/h186.mxl",
                                 "music21:schumann_clara/polonaise_op1n1.mxl"])
def test_reserved_pieces_are_recognised_and_refused(ref):
    assert reserved_piece(ref) in RESERVED_EVAL_PIECES
    with pytest.raises(ParamsError, match=re.escape("quality.dev[0].ref")):
        validate_params({**BASE, "quality": {"dev": [{"ref": ref, "chunk": 0, "why": "no"}]}})


def test_similar_names_are_not_reserved():
    assert reserved_piece("music21:schumann_clara/polonaise_op1n2") is None
    assert reserved_piece("music21:mozart/k5450.mxl") is None


@pytest.mark.parametrize(
    "quality, message",
    [
        ({"dev": [{"ref": "a", "chunk": 0, "why": "w"}], "holdout": [{"ref": "a", "chunk": 0, "why": "w"}]},
         "quality.holdout[0] = 'a:0', expected a chunk not already listed (quality.dev[0])"),
        ({"dev": [{"ref": "a", "chunk": -1, "why": "w"}]}, "quality.dev[0].chunk = -1"),
        ({"dev": [{"ref": "a", "chunk": 0}]}, "quality.dev[0].why = None"),
        ({"rollouts": 0}, "quality.rollouts = 0"),
        ({"sets": []}, "unknown key 'quality.sets'"),
    ],
)
def test_quality_errors_name_the_key(quality, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params({**BASE, "quality": quality}, source="p.yaml")
