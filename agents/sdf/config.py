"""Goal autoencoder configuration. Defaults are PianoMime Appendix G unless noted."""

from __future__ import annotations

import dataclasses

from agents.common.config import check_fields


@dataclasses.dataclass(frozen=True)
class SDFConfig:
    """Hyperparameters of PianoMime's SDF goal autoencoder (App. G, Fig. 8, Algorithm 2).

    Attributes:
      conv_channels: filters of the encoder's 1-D conv layers over the 88 keys.
        PianoMime App. G: 2, 4, 8, 16.
      kernel_size: conv kernel. PianoMime App. G: 3.
      conv_stride: conv stride (88 -> 44 -> 22 -> 11 -> 6 keys). App. G gives
        none; PianoMime's released encoder (`goal_auto_encoder/network.py`) uses 2.
      latent_dim: size of the latent goal code z. PianoMime App. G: 16.
      decoder_hidden: hidden widths of the decoder MLP over [z, PE(x)].
        PianoMime App. G: two layers of 16.
      pe_frequencies: octaves of the NeRF-style positional encoding of the
        query point (App. G encodes it; the count is ours).
      learning_rate: Adam step size. PianoMime App. G: 1e-3.
      epochs: passes over the goal set. PianoMime App. G: 100.
      max_steps: cap on gradient steps (0: none), for small machines (ours).
      batch_size: goals per step. PianoMime's released `train_sdf_ae.py`: 1024.
      queries_per_goal: query points drawn per goal and step (ours).
      query_margin: the query box is the keyboard's box grown by this much (m, ours).
      query_height: and reaches this far above the key tops (m, ours).
      max_distance: SDF values are clipped here (m); a goal with no key down
        has this value everywhere (ours: Eq. 5 is undefined for it). The decoder
        predicts SDF / max_distance.
    """

    conv_channels: tuple[int, ...] = (2, 4, 8, 16)
    kernel_size: int = 3
    conv_stride: int = 2
    latent_dim: int = 16
    decoder_hidden: tuple[int, ...] = (16, 16)
    pe_frequencies: int = 6
    learning_rate: float = 1e-3
    epochs: int = 100
    max_steps: int = 0
    batch_size: int = 1024
    queries_per_goal: int = 16
    query_margin: float = 0.05
    query_height: float = 0.1
    max_distance: float = 0.3

    def __post_init__(self):
        check_fields(self, dims=("conv_channels", "decoder_hidden"),
                     ints={**dict.fromkeys(("kernel_size", "conv_stride", "latent_dim", "epochs", "batch_size",
                                            "queries_per_goal"), 1), "pe_frequencies": 0, "max_steps": 0},
                     positive=("learning_rate", "query_margin", "query_height", "max_distance"))
