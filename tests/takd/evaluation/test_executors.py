"""The executor seam: the serial executor, and a `UnitQueue` that grows while a map runs."""

from keras_takd.takd.evaluation.executors import SerialExecutor, UnitQueue


def test_the_serial_executor_runs_the_units_in_order():
    results = list(SerialExecutor().map(lambda unit: 2 * unit, [3, 1, 2]))
    assert results == [(3, 6), (1, 2), (2, 4)]


def test_units_put_while_the_map_runs_are_run_too():
    queue = UnitQueue()
    queue.put([1])
    done = []
    for unit, _ in SerialExecutor().map(lambda unit: None, queue):
        done.append(unit)
        if unit < 3:  # each unit brings the next, as a written chain brings its units
            queue.put([unit + 1])
    assert done == [1, 2, 3]
    assert len(queue) == 0


def test_a_lower_priority_is_taken_first_and_equals_in_the_order_put():
    queue = UnitQueue()
    queue.put(["train a", "train b"], priority=2)
    queue.put(["attack a1", "attack a2"], priority=0)
    queue.put(["indicator a1"], priority=1)
    assert list(queue) == ["attack a1", "attack a2", "indicator a1", "train a", "train b"]


def test_a_queue_that_ran_dry_yields_again_and_says_what_is_taken():
    taken = []
    queue = UnitQueue(taken.append)
    assert list(queue) == []
    queue.put(["a"])
    assert next(queue) == "a"
    assert taken == ["a"]
