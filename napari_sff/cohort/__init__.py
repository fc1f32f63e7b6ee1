"""A cohort: many subjects through one model and into one table.

:mod:`.predict` walks inputs, takes this rank's share, skips finished work and overlaps reading and writing with
inference; :mod:`.qc` gathers the maps' sidecars into one row per input (status, timing, how unlike its training
data the model found each scan); :mod:`.table` turns labels and maps of many cases into one ROI table and an
agreement summary.
"""

from napari_sff.cohort.predict import (
    OUTPUT_SUFFIX,
    CohortItem,
    CohortSummary,
    collect_inputs,
    my_share,
    parse_shard,
    rank_and_world,
    run_cohort,
)

__all__ = ["OUTPUT_SUFFIX", "CohortItem", "CohortSummary", "collect_inputs", "my_share", "parse_shard",
           "rank_and_world", "run_cohort"]
