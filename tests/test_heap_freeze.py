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
    assert imports.freeze_heap() and gc.get_freeze_count() == frozen  # once
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
