"""The other shipped models, so that their files keep decoding to the same pixels.

A codec that runs shipped weights decodes a file of another shipped model (by the model id in its
header) with that model's weights, built once with the same options and limits: the older ones
(dpc-v1) and the ones beside it (dpc-v3 on TAEF2's latent, dpc-v2 on ours), in either direction.
"""

from .model_files import load_model
from .shipped import shipped_weights


class OlderModels:
    """The other shipped models of one codec, each loaded on first use."""

    def __init__(self, codec, stage_weights: dict):
        """`codec`: the Codec running the shipped weights; `stage_weights`: the INT8 table and
        decoder weights it was given, which an older model of the same family uses too."""
        self.codec, self.stage_weights = codec, stage_weights
        self.loaded: dict[int, object] = {}

    def get(self, model_id: int):
        """The Codec for this shipped model id, or None if no shipped model has it."""
        if model_id not in self.loaded:
            path = shipped_weights(model_id)
            if path is None:
                return None
            codec = self.codec
            older = type(codec)(load_model(path), limits=codec.limits, options=codec.options, **self.stage_weights)
            # INT8 tables are calibrated for the default weights; an older model's files use that one
            older.runners.digests = codec.weights_sha256
            if type(older.autoencoder) is type(codec.autoencoder):  # the same latent space: one prior
                older.refiner = codec.refiner
            self.loaded[model_id] = older
        return self.loaded[model_id]
