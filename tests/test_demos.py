"""Demonstration selectors of the SFT and FTICL variants."""

import pytest

from ftgen.demos import DemoSelector, VariantError


def test_demo_selectors():
    pool = [{"id": f"p{i}", "inputs": {"text": f"pool sentence {i}"}} for i in range(4)]
    train = [
        {"id": f"t{i}", "inputs": {"text": t}}
        for i, t in enumerate(
            ["the cat sat on the mat", "dogs run in parks", "a cat on a mat again", "stock prices fell"]
        )
    ]
    assert DemoSelector("sft", pool, train)(train[0]) == []
    assert [d["id"] for d in DemoSelector("fticl-fixed-k2", pool, train)(train[0])] == ["p0", "p1"]
    rnd = DemoSelector("fticl-random-k3", pool, train, seed=5)
    for ex in train:
        picked = [d["id"] for d in rnd(ex)]
        assert len(set(picked)) == 3 and ex["id"] not in picked
        assert picked == [d["id"] for d in DemoSelector("fticl-random-k3", pool, train, seed=5)(ex)]
    near = DemoSelector("fticl-retrieved-k1", pool, train)(train[0])
    assert [d["id"] for d in near] == ["t2"]  # most similar, never itself
    with pytest.raises(VariantError):
        DemoSelector("fticl-fixed-k9", pool, train)
    with pytest.raises(VariantError):
        DemoSelector("dpo", pool, train)
