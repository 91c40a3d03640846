"""scripts/compare_weights.py: per-prefix counts of identical and differing tensors."""

import torch

from scripts.compare_weights import compare


def test_compare_counts_same_differing_and_missing_tensors_per_prefix():
    a = {"decoder.w": torch.ones(2), "decoder.b": torch.zeros(1), "refiner.w": torch.ones(3)}
    b = {"decoder.w": torch.ones(2), "decoder.b": torch.ones(1), "compressor.w": torch.ones(1)}
    out = compare(a, b)
    assert out["decoder"] == {"same": 1, "differ": 1}
    assert out["refiner"] == {"only in A": 1}
    assert out["compressor"] == {"only in B": 1}


def test_a_reshaped_tensor_with_the_same_values_differs():
    assert compare({"x.w": torch.ones(2, 1)}, {"x.w": torch.ones(1, 2)})["x"] == {"differ": 1}
