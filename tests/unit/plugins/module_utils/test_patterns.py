"""Event patterns and stable shards of instance ids (module_utils/patterns.py)."""

import itertools
import random

import pytest
from plan_helpers import ids

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    patterns,
)


@pytest.mark.parametrize("count", [1, 20, 85, 86, 200, 1000])
def test_shards_cover_every_id_once_and_every_pattern_fits(count):
    instance_ids = ids(count)
    shards = patterns.shard_instance_ids(instance_ids)
    assert sorted(i for shard in shards for i in shard) == sorted(instance_ids)
    assert all(
        len(patterns.state_change_pattern(shard)) <= patterns.MAX_EVENT_PATTERN_CHARS for shard in shards
    )


def test_shards_are_as_few_as_the_limit_allows():
    shards = patterns.shard_instance_ids(ids(1000))
    # Every shard but the last is full: one more id would overflow it.
    for shard, following in itertools.pairwise(shards):
        assert len(patterns.state_change_pattern([*shard, following[0]])) > patterns.MAX_EVENT_PATTERN_CHARS


def test_sharding_does_not_depend_on_input_order():
    instance_ids = ids(300)
    shuffled = list(instance_ids)
    random.Random(1).shuffle(shuffled)
    assert patterns.shard_instance_ids(instance_ids) == patterns.shard_instance_ids(shuffled)


def shard_of(shards):
    return {instance_id: index for index, shard in enumerate(shards) for instance_id in shard}


def test_fresh_shards_are_sorted_and_packed():
    instance_ids = ids(300)
    assert patterns.shard_instance_ids(list(reversed(instance_ids))) == patterns.shard_instance_ids(
        instance_ids, current=[]
    )
    assert [i for shard in patterns.shard_instance_ids(instance_ids) for i in shard] == sorted(instance_ids)


def test_new_ids_join_the_last_shard_and_never_move_the_others():
    current = patterns.shard_instance_ids(ids(250))
    assert len(current) > 2
    # An id that sorts first joins at the end; a plain re-sort would shift every shard.
    added = "i-00000000000000000"
    grown = patterns.shard_instance_ids([*ids(250), added], current=current)
    assert grown[: len(current) - 1] == current[:-1]
    assert grown[len(current) - 1][: len(current[-1])] == current[-1]
    assert added in grown[-1]


@pytest.mark.parametrize("seed", range(25))
def test_a_reshard_never_moves_an_id_to_a_later_rule(seed):
    """The role writes rules in order and removes stale ones last: an id may move to an
    earlier rule (covered by the new one first) but never to a later one."""
    rng = random.Random(seed)
    before = rng.sample(ids(2000), rng.randint(1, 600))
    current = patterns.shard_instance_ids(before)
    for _round in range(3):
        kept = [i for i in before if rng.random() > 0.3]
        after = kept + rng.sample([i for i in ids(2000) if i not in before], rng.randint(0, 200))
        shards = patterns.shard_instance_ids(after, current=current)
        old, new = shard_of(current), shard_of(shards)
        assert sorted(new) == sorted(set(after))  # every listed id in exactly one rule
        assert all(new[i] <= old[i] for i in kept)
        for shard in shards:
            assert len(patterns.state_change_pattern(shard)) <= patterns.MAX_EVENT_PATTERN_CHARS
        before, current = after, shards


def test_a_shrunk_deployment_packs_into_fewer_rules():
    current = patterns.shard_instance_ids(ids(200))
    keep = ids(200)[:20] + ids(200)[-1:]
    assert patterns.shard_instance_ids(keep, current=current) == [sorted(keep)]


def test_pattern_instance_ids_reads_only_lists_of_ids():
    assert patterns.pattern_instance_ids(patterns.state_change_pattern(["i-0000000a"])) == ["i-0000000a"]
    assert patterns.pattern_instance_ids(patterns.state_change_pattern()) == []
    assert patterns.pattern_instance_ids("not json") == []
    assert patterns.pattern_instance_ids(None) == []
