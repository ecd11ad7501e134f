"""The data order is one integer away from any point of a run."""

from expertune.train.order import SampleOrder


def test_each_epoch_is_a_permutation_and_epochs_differ():
    order = SampleOrder(10, seed=3)
    e0, e1 = order.take(0, 10), order.take(10, 10)
    assert sorted(e0) == list(range(10)) == sorted(e1)
    assert e0 != e1


def test_take_is_a_pure_function_of_position():
    a = SampleOrder(7, seed=1)
    stream = a.take(0, 30)
    b = SampleOrder(7, seed=1)
    assert b.take(12, 9) == stream[12:21]
    assert a.epoch_of(21) == 3
