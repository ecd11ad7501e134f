"""Which samples evaluation uses: fixed, independent of order, held out when possible."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expertune.evaluate.eval_set import eval_set_for, split_items, validation_set_for


@dataclass(frozen=True)
class Item:
    path: Path
    caption: str


class Pool:
    """A cached dataset stand-in: `items` and indexing."""

    def __init__(self, names: list[str]) -> None:
        self.items = [Item(Path("/data") / n, f"caption of {n}") for n in names]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"name": self.items[i].path.name}


@dataclass
class Data:
    dataset: Pool
    eval_dataset: Pool | None = None
    validation_dataset: Pool | None = None


NAMES = [f"{i:03d}.png" for i in range(20)]


def test_split_is_deterministic_disjoint_and_order_free():
    pool = Pool(NAMES)
    train, held = split_items(pool.items, 0.25)
    assert len(held) == 5 and sorted(train + held) == list(range(20))
    shuffled = Pool(list(reversed(NAMES)))
    _, held_again = split_items(shuffled.items, 0.25)
    assert {pool.items[i].path for i in held} == {shuffled.items[i].path for i in held_again}


def test_split_keeps_one_of_each_and_nothing_at_zero():
    train, held = split_items(Pool(NAMES[:2]).items, 0.9)
    assert len(train) == 1 and len(held) == 1
    assert split_items(Pool(NAMES).items, 0.0) == (list(range(20)), [])
    assert split_items(Pool(NAMES[:1]).items, 0.5) == ([0], [])


def test_an_eval_dataset_wins_over_a_split():
    chosen = eval_set_for(Data(Pool(NAMES), eval_dataset=Pool(["e1.png", "e2.png"])), 0.5)
    assert chosen.names == ("e1.png", "e2.png") and chosen.held_out
    assert [chosen.dataset[i]["name"] for i in range(len(chosen))] == ["e1.png", "e2.png"]


def test_without_an_eval_set_training_images_are_used_and_marked():
    split = eval_set_for(Data(Pool(NAMES)), 0.25)
    assert len(split) == 5 and not split.held_out and "not held out" in split.source
    fallback = eval_set_for(Data(Pool(NAMES)), 0.0)
    assert len(fallback) == 20 and not fallback.held_out


def test_validation_images_come_from_eval_then_validation_pool_then_training():
    data = Data(Pool(NAMES), validation_dataset=Pool(NAMES[:4]))
    first = validation_set_for(data, 3)
    assert len(first) == 3 and set(first.names) <= set(NAMES[:4])
    assert validation_set_for(data, 3).names == first.names
    data.eval_dataset = Pool(["e.png"])
    assert validation_set_for(data, 3).names == ("e.png",)
    assert len(validation_set_for(Data(Pool(NAMES)), 2)) == 2
