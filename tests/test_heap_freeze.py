"""napari_sff.imports.freeze_heap: the imported modules' objects out of every later full collection, undone by
whoever froze, never someone else's freeze."""

from __future__ import annotations

import gc

import pytest

from napari_sff import imports


@pytest.fixture
def no_freeze(monkeypatch):
    """A process with nothing frozen, left so afterwards whatever the test does."""
    imports.unfreeze_heap()
    assert gc.get_freeze_count() == 0, "something froze objects before the test"
    monkeypatch.delenv(imports.GC_FREEZE_SWITCH, raising=False)
    yield
    gc.unfreeze()
    imports._frozen_here = False


def test_freeze_heap_freezes_once_and_undoes_only_its_own(no_freeze):
    assert imports.freeze_heap() and gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    young = [[] for _ in range(1000)]  # tracked objects a second freeze would add to the count
    # Once: the count does not grow. It may shrink: a frozen object freed by its reference count (another
    # thread's, say) leaves the permanent generation (a CI run saw 2 fewer), so equality would be flaky.
    assert imports.freeze_heap() and gc.get_freeze_count() <= frozen
    del young
    assert imports.unfreeze_heap() and gc.get_freeze_count() == 0
    assert not imports.unfreeze_heap()
    gc.freeze()  # someone else's freeze: left alone
    assert not imports.freeze_heap()
    assert not imports.unfreeze_heap() and gc.get_freeze_count() > 0


def test_the_switch_leaves_the_collector_alone(no_freeze, monkeypatch):
    monkeypatch.setenv(imports.GC_FREEZE_SWITCH, "0")
    assert not imports.freeze_heap() and gc.get_freeze_count() == 0


def test_a_quiet_import_keeps_a_freeze_in_force(no_freeze):
    assert imports.freeze_heap()
    imports.import_quietly(["colorsys"])  # its freeze + unfreeze would have undone ours
    assert gc.get_freeze_count() > 0 and imports.unfreeze_heap()


def test_frozen_cyclic_garbage_waits_for_the_unfreeze(no_freeze):
    """What the price is, and why the widget unfreezes before a layer of then is removed."""
    class Node:
        pass

    def cycle():
        node = Node()
        node.me = node
        return node

    import weakref

    old = cycle()
    old_ref = weakref.ref(old)
    assert imports.freeze_heap()
    young = cycle()
    young_ref = weakref.ref(young)
    del old, young
    gc.collect()
    assert young_ref() is None  # made after the freeze: collected
    assert old_ref() is not None  # frozen: kept
    imports.unfreeze_heap()
    gc.collect()
    assert old_ref() is None


@pytest.fixture
def collector_thresholds():
    """CPython's default thresholds for the test (a full collection after more than 10 middle ones), restored."""
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    if not enabled:
        gc.disable()


def full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def test_a_full_collection_runs_ahead_only_when_one_may_come_due(collector_thresholds):
    gc.collect()  # the count of middle collections since a full one: 0
    assert not imports.full_collection_due(3)
    before = full_collections()
    assert not imports.collect_if_due(3) and full_collections() == before  # far from due: nothing collected
    for _ in range(8):
        gc.collect(1)  # each middle collection counts towards the next full one
    assert gc.get_count()[2] == 8
    assert imports.full_collection_due(3) and not imports.full_collection_due(2)  # 8 + 3 > 10, 8 + 2 is not
    assert imports.collect_if_due(3) and full_collections() == before + 1 and gc.get_count()[2] == 0
    gc.disable()  # a collector switched off never comes due
    for _ in range(10):
        gc.collect(1)
    assert not imports.full_collection_due(3) and not imports.collect_if_due(3)
