"""The batch order: one bucket per batch, repeats and probability as SimpleTuner means
them, and batch b a pure function of b (so one integer resumes it)."""

from collections import Counter

import pytest

from expertune.data.training_set import Group
from expertune.train.order import BatchPlan


def groups(repeats_b=0, probability_b=1.0):
    return [
        Group("a", (64, 64), tuple(range(0, 7)), 0, 1.0),
        Group("a", (80, 64), tuple(range(7, 10)), 0, 1.0),
        Group("b", (64, 64), tuple(range(10, 12)), repeats_b, probability_b),
    ]


def bucket_of(index):
    return "a64" if index < 7 else "a80" if index < 10 else "b64"


def test_every_batch_is_one_bucket_and_an_epoch_covers_every_sample():
    plan = BatchPlan(groups(), seed=1, global_batch=2)
    assert plan.batches_per_epoch == 4 + 2 + 1  # ceil(7/2) + ceil(3/2) + ceil(2/2)
    epoch = [plan.batch(b) for b in range(plan.batches_per_epoch)]
    assert all(len(batch) == 2 and len({bucket_of(i) for i in batch}) == 1 for batch in epoch)
    assert {i for batch in epoch for i in batch} == set(range(12))


def test_batch_is_a_pure_function_of_its_index():
    first = BatchPlan(groups(), seed=3, global_batch=2)
    stream = [first.batch(b) for b in range(30)]
    resumed = BatchPlan(groups(), seed=3, global_batch=2)
    assert [resumed.batch(b) for b in range(17, 30)] == stream[17:]
    assert resumed.epoch_of(21) == 3
    other_seed = BatchPlan(groups(), seed=4, global_batch=2)
    assert [other_seed.batch(b) for b in range(30)] != stream
    assert stream[:7] != stream[7:14]  # each epoch is a fresh shuffle


def test_repeats_multiply_a_dataset_and_probability_orders_it():
    plan = BatchPlan(groups(repeats_b=3), seed=0, global_batch=2)
    epoch = [i for b in range(plan.batches_per_epoch) for i in plan.batch(b)]
    seen = Counter(epoch)
    assert seen[10] == seen[11] == 4  # 2 images, 3 repeats: 4 passes each
    assert sum(seen[i] for i in range(7)) == 8 and min(seen[i] for i in range(7)) == 1  # wrapped
    favoured = BatchPlan(groups(repeats_b=3, probability_b=50.0), seed=0, global_batch=2)
    first = [favoured.batch(b)[0] for b in range(4)]
    assert all(i >= 10 for i in first)  # b's four batches come first, almost surely


def test_needs_groups():
    with pytest.raises(ValueError):
        BatchPlan([], seed=0, global_batch=2)
