"""Format constants and pure rules: ``plan_chunks`` (chunks and shards) and ``check_name``."""

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


def expected_shards(n_params: int, ct: int, n_columns: int) -> ChunkPlan:
    """Rule 3 written out: inner columns of equal width <= 4096, k of them per shard."""
    n_inner = 1
    while n_inner * 4096 < n_params:
        n_inner += 1
    ci = -(-n_params // n_inner)
    per_shard = -(-n_inner // n_columns)
    return ChunkPlan(snapshots=ct, params=ci, shard_params=per_shard * ci)


def check_rule(n_params: int) -> None:
    plan = plan_chunks(n_params)
    row = 4 * n_params
    ct = plan.snapshots
    assert ct == expected_snapshots_per_chunk(n_params)
    assert ct & (ct - 1) == 0, "snapshots per chunk is a power of two"
    assert 1 <= ct <= 256
    assert plan.nbytes == ct * plan.params * 4
    # A slab (ct full rows) fits in 256 MiB unless even one row does not.
    assert ct * row <= 256 * MiB or ct == 1
    if ct * row <= 256 * MiB and 16 * row <= 256 * MiB:
        assert ct >= 16
    # Rule 2's unit: whole rows while a chunk row is at most 8 MiB, else equal columns of <= 4 MiB.
    if ct * row <= 8 * MiB:
        cp, n_columns = n_params, 1
    else:
        n_columns = -(-n_params // ((4 * MiB) // (ct * 4)))
        cp = -(-n_params // n_columns)
        if n_params < 10**8:  # the oracle's linear search is slow past that
            assert cp == expected_params_per_chunk(n_params, ct)
        assert cp * ct * 4 <= 4 * MiB
        assert n_columns * cp - n_params < n_columns, (
            "padding of the edge column is under one param per column"
        )
    # Rule 3: units wider than 4096 params become shards of inner chunks of at most 4096.
    if cp <= 4096:
        assert plan == ChunkPlan(snapshots=ct, params=cp) and plan.shards is None
    else:
        if n_params < 10**8:
            assert plan == expected_shards(n_params, ct, n_columns)
        ci, width = plan.params, plan.write_params
        assert ci <= 4096 and width % ci == 0 and plan.shards == (ct, width)
        n_inner = -(-n_params // 4096)
        assert n_inner * ci - n_params < n_inner, "padding under one param per inner column"
        assert -(-n_params // width) <= n_columns, "no more shards than rule 2's units"
        assert ct * width * 4 <= 8 * MiB + ct * 4 * n_inner
    if n_params >= 1024:
        assert 1 * MiB <= ct * plan.write_params * 4 <= 8 * MiB + ct * 4 * (n_params // 4096 + 1), (
            n_params,
            plan,
        )
    else:
        assert plan == ChunkPlan(snapshots=256, params=n_params)


EDGES = [
    1,
    2,
    7,
    255,
    1023,
    1024,
    1025,
    3000,
    4096,
    65535,
    65536,
    131072,
    131073,
    10**6,
    2**22 - 1,
    2**22,
    2**22 + 1,
    10**7,
    2**26,
    2**26 + 1,
    10**8,
    10**9,
    3 * 10**9,
]


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
    assert plan_chunks(2**16) == ChunkPlan(
        16, 4096, 2**16
    )  # one 16 x 256 KiB = 4 MiB shard of 16 inner chunks
    assert plan_chunks(1000) == ChunkPlan(256, 1000)
    assert plan_chunks(3000) == ChunkPlan(128, 3000)  # 128 x 12000 B ~ 1.46 MiB
    assert plan_chunks(4096) == ChunkPlan(64, 4096)  # the widest plain chunk
    assert plan_chunks(2**17 + 1) == ChunkPlan(
        16, 3972, 43692
    )  # 8 MiB + 64 B: 3 shards of 11 inner chunks, 3 params of padding
    assert plan_chunks(10**6) == ChunkPlan(
        16, 4082, 65312
    )  # 245 inner columns in 16 shards (the last one of 5)
    assert plan_chunks(10**8) == ChunkPlan(
        1, 4096, 1044480
    )  # one row is 400 MB: 1 snapshot per slab, 96 shards


@pytest.mark.micro
@pytest.mark.parametrize("spc", [1, 3, 16, 20, 1000])
def test_plan_chunks_explicit_snapshots(spc):
    """An explicit snapshots_per_chunk is kept; params per chunk follow the 8 MiB rule,
    then the sharding rule past 4096."""
    for n in (1, 500, 10**6):
        plan = plan_chunks(n, spc)
        assert plan.snapshots == spc
        cp = n if spc * n * 4 <= 8 * MiB else expected_params_per_chunk(n, spc)
        if cp <= 4096:
            assert plan == ChunkPlan(spc, cp)
        else:
            assert plan == expected_shards(n, spc, -(-n // cp))


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
