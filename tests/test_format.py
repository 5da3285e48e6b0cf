"""Format constants and pure rules: ``plan_chunks`` and ``check_name``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajbench.errors import TrajbenchError
from trajbench.store.format import ChunkPlan, check_name, plan_chunks

MiB = 1 << 20


def expected_snapshots_per_chunk(n_params: int) -> int:
    """The documented rule, written out as a plain loop (an oracle independent of format.py)."""
    row = 4 * n_params
    ct = 16
    while ct < 256 and ct * row < 1 * MiB:
        ct *= 2
    while ct > 1 and ct * row > 256 * MiB:
        ct //= 2
    return ct


def expected_params_per_chunk(n_params: int, ct: int) -> int:
    """cp from the documented rule: equal columns of at most 4 MiB, found by a plain search."""
    if ct * n_params * 4 <= 8 * MiB:
        return n_params
    widest = (4 * MiB) // (ct * 4)
    n_columns = 1
    while n_columns * widest < n_params:  # the fewest columns of at most `widest` params
        n_columns += 1
    cp = n_params // n_columns
    while cp * n_columns < n_params:  # the narrowest equal width that covers every param
        cp += 1
    return cp


def check_rule(n_params: int) -> None:
    plan = plan_chunks(n_params)
    row = 4 * n_params
    ct, cp = plan.snapshots, plan.params
    assert ct == expected_snapshots_per_chunk(n_params)
    assert ct & (ct - 1) == 0, "snapshots per chunk is a power of two"
    assert 1 <= ct <= 256
    assert 1 <= cp <= n_params
    assert plan.nbytes == ct * cp * 4
    # A slab (ct full rows) fits in 256 MiB unless even one row does not.
    assert ct * row <= 256 * MiB or ct == 1
    if ct * row <= 256 * MiB and 16 * row <= 256 * MiB:
        assert ct >= 16
    # Whole rows per chunk while a chunk row is at most 8 MiB, else equal columns of <= 4 MiB.
    if ct * row <= 8 * MiB:
        assert cp == n_params
    else:
        if n_params < 10**8:  # the oracle's linear search is slow past that
            assert cp == expected_params_per_chunk(n_params, ct)
        n_columns = -(-n_params // cp)
        assert cp * ct * 4 <= 4 * MiB
        assert n_columns * cp - n_params < n_columns, "padding of the edge column is under one param per column"
        assert n_columns == -(-n_params // ((4 * MiB) // (ct * 4))), "no more columns than 4 MiB chunks need"
    if n_params >= 1024:
        assert 1 * MiB <= plan.nbytes <= 8 * MiB, (n_params, plan)
    else:
        assert plan == ChunkPlan(snapshots=256, params=n_params)


EDGES = [1, 2, 7, 255, 1023, 1024, 1025, 3000, 4096, 65535, 65536, 131072, 131073, 10**6,
         2**22 - 1, 2**22, 2**22 + 1, 10**7, 2**26, 2**26 + 1, 10**8, 10**9, 3 * 10**9]


@pytest.mark.micro
@pytest.mark.parametrize("n_params", EDGES)
def test_plan_chunks_rule_at_edges(n_params):
    """The documented chunk rule holds at the thresholds of every clause."""
    check_rule(n_params)


@pytest.mark.micro
@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=4 * 10**9))
def test_plan_chunks_rule_everywhere(n_params):
    """The documented chunk rule holds for arbitrary parameter counts."""
    check_rule(n_params)


@pytest.mark.micro
def test_plan_chunks_known_values():
    """A few hand-computed plans."""
    assert plan_chunks(100) == ChunkPlan(256, 100)  # tiny: one 256-snapshot block
    assert plan_chunks(2**16) == ChunkPlan(16, 2**16)  # 16 x 256 KiB = 4 MiB
    assert plan_chunks(1000) == ChunkPlan(256, 1000)
    assert plan_chunks(3000) == ChunkPlan(128, 3000)  # 128 x 12000 B ~ 1.46 MiB
    assert plan_chunks(2**17 + 1) == ChunkPlan(16, 43691)  # 8 MiB + 64 B: 3 equal columns, 2 params of padding
    assert plan_chunks(10**6) == ChunkPlan(16, 62500)  # 16 columns of 62,500: no padding (was 65,536, 4.9% padding)
    assert plan_chunks(10**8) == ChunkPlan(1, 1041667)  # one row is 400 MB: 1 snapshot per slab, 96 columns


@pytest.mark.micro
@pytest.mark.parametrize("spc", [1, 3, 16, 20, 1000])
def test_plan_chunks_explicit_snapshots(spc):
    """An explicit snapshots_per_chunk is kept; params per chunk follow the 8 MiB rule."""
    for n in (1, 500, 10**6):
        plan = plan_chunks(n, spc)
        assert plan.snapshots == spc
        if spc * n * 4 <= 8 * MiB:
            assert plan.params == n
        else:
            assert plan.params == expected_params_per_chunk(n, spc)


@pytest.mark.micro
@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", None])
def test_plan_chunks_rejects_bad_n_params(bad):
    """n_params must be a positive int; the message names the value."""
    with pytest.raises(TrajbenchError, match="n_params") as info:
        plan_chunks(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.micro
@pytest.mark.parametrize("bad", [0, -3, 2.0, "4"])
def test_plan_chunks_rejects_bad_snapshots_per_chunk(bad):
    """snapshots_per_chunk must be a positive int."""
    with pytest.raises(TrajbenchError, match="snapshots_per_chunk") as info:
        plan_chunks(10, bad)
    assert repr(bad) in str(info.value)


@pytest.mark.micro
@pytest.mark.parametrize("name", ["a", "run-1", "digits_mlp.s0", "A" * 128, "0"])
def test_check_name_accepts(name):
    """Single-segment names of letters, digits, _ . - are accepted and returned."""
    assert check_name(name, "run_id") == name


@pytest.mark.micro
@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "_x", "-x", "a b", "A" * 129, "é", 3, None])
def test_check_name_rejects(name):
    """Anything else raises one line naming the value and what was being named."""
    with pytest.raises(TrajbenchError) as info:
        check_name(name, "run_id")
    message = str(info.value)
    assert "run_id" in message and repr(name) in message and "\n" not in message
