"""Paired T2w / SFF slices for training: finding and aligning pairs (:mod:`.pairs`), the streaming slice cache
(:mod:`.cache`), augmentation and the dataset (:mod:`.dataset`). ``python -m training.data`` builds a cache."""

from training.data.cache import (
    CACHE_FORMAT,
    CACHE_INFO,
    SPLITS,
    SliceStack,
    build_slice_cache,
    cache_spacing,
    fit_to_size,
    open_split,
)
from training.data.dataset import Augmentation, SliceDataset, augmentation_config
from training.data.pairs import (
    AlignedPair,
    Pair,
    PairError,
    find_pairs,
    flag_misaligned,
    load_pair,
    register_rigid,
    sff_on_t2w_grid,
    split_subjects,
    subjects_of,
)

__all__ = [
    "CACHE_FORMAT", "CACHE_INFO", "SPLITS", "AlignedPair", "Augmentation", "Pair", "PairError", "SliceDataset",
    "SliceStack", "augmentation_config", "build_slice_cache", "cache_spacing", "find_pairs", "fit_to_size",
    "flag_misaligned", "load_pair", "open_split", "register_rigid", "sff_on_t2w_grid", "split_subjects",
    "subjects_of",
]
