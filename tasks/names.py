"""Names shared across the pipeline, with no heavy import (no JAX, TensorFlow or MuJoCo):
the specialist kinds and the file names of the manifests a collection writes."""

SPECIALIST_KINDS = ("droq", "residual", "ik", "mpc")  # tasks.specialist trains each one
SONG_MANIFEST = "manifest.json"  # in each song's shard folder (tasks.rlds)
SPECIALIST_MANIFEST = "specialist.json"  # in each chunk's specialist folder
ROLLOUTS_MANIFEST = "rollouts.json"  # in each chunk's rollouts folder
NOMINAL_FILE = "nominal.npz"  # the nominal trajectory of residual/ik/mpc specialists, in the work folder
