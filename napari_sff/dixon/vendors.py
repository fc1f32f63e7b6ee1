"""The Dixon roles and the vendor table: what scanners write into ImageType and SeriesDescription for each image.

:data:`IMAGE_TYPE_TOKENS` and :data:`DESCRIPTION_TOKENS` are the one table of what vendors write; :mod:`.pairing`
reads a series' role from them.
"""

from __future__ import annotations

FAT, WATER, IN_PHASE, OPPOSED_PHASE, FAT_FRACTION = "fat", "water", "in_phase", "opposed_phase", "fat_fraction"

# ---------------------------------------------------------------------------------------------------------------
# The vendor table: what scanners write into ImageType (0008,0008) and SeriesDescription (0008,103E).
#
# ImageType, values 3 and on (value 1 is ORIGINAL/DERIVED, value 2 PRIMARY/SECONDARY), exact tokens:
#   Siemens syngo (VIBE / TSE Dixon)  ORIGINAL\PRIMARY\M\FAT\NORM\DIS2D, ...\M\WATER\..., ...\M\IN_PHASE\...,
#                                     ...\M\OUT_PHASE\...; XA (Vida) DERIVED\PRIMARY\DIXON\WATER, ...\OPP_PHASE;
#                                     older exports ...\M\F / ...\M\W
#   GE (LAVA-Flex, IDEAL, Flex TSE)   DERIVED\PRIMARY\DIXON\WATER[\MAGNITUDE], ...\FAT, ...\IN_PHASE, ...\OUT_PHASE
#   Philips (mDIXON) classic          DERIVED\PRIMARY\W\W\DERIVED, ...\F\F\..., ...\IP\IP\..., ...\OP\OP\...;
#                                     enhanced FrameType pre-R12 W/F/IP/OP, R12+ WATER/FAT/IN_PHASE/OUT_OF_PHASE;
#                                     mDIXON Quant adds FF (fat fraction) and T2_STAR maps
# SeriesDescription:
#   Siemens: protocol name + suffix, "t1_vibe_dixon_tra_F", "..._W", "..._opp", "..._in" (sometimes "_W_1")
#   GE: a prefix with a colon, "WATER: Ax LAVA-Flex", "FAT: ...", "InPhase: ...", "OutPhase: ..."
#   Philips: often one description for all types ("mDIXON TSE"): ImageType decides; sites add "_W"/"_F"/"water"/"fat"
# In-phase, opposed-phase and fat-fraction series are recognised so that they are never taken for fat or water.
# ---------------------------------------------------------------------------------------------------------------
IMAGE_TYPE_TOKENS: dict[str, frozenset[str]] = {
    FAT: frozenset({"FAT", "F"}),
    WATER: frozenset({"WATER", "W"}),
    IN_PHASE: frozenset({"IN_PHASE", "IP", "INPHASE"}),
    OPPOSED_PHASE: frozenset({"OUT_PHASE", "OPP_PHASE", "OUT_OF_PHASE", "OPPOSED_PHASE", "OP", "OPP", "OUTPHASE"}),
    FAT_FRACTION: frozenset({"FF", "FAT_FRACTION", "FATFRACTION", "PDFF", "SFF"}),
}
#: SeriesDescription / layer-name tokens (split on anything not a letter or digit, upper case, trailing numbers
#: dropped). W and F count only as the last token ("..._W"); GE's "WATER:" prefix counts as the first.
DESCRIPTION_TOKENS: dict[str, frozenset[str]] = {
    FAT: frozenset({"FAT", "F"}),
    WATER: frozenset({"WATER", "W"}),
    IN_PHASE: frozenset({"IN", "INPHASE", "IP"}),
    OPPOSED_PHASE: frozenset({"OPP", "OP", "OUT", "OUTPHASE", "OPPPHASE", "OPPOSED"}),
    FAT_FRACTION: frozenset({"FF", "PDFF", "SFF", "FRACTION", "FATFRACTION"}),
}
#: Words that make "fat" mean fat suppression, never a fat image.
SUPPRESSION_TOKENS = frozenset({"SAT", "FATSAT", "FS", "SUPPRESSED", "SUPPRESSION", "SPAIR", "SPIR", "STIR", "FSAT"})
#: Words that say a description belongs to a Dixon acquisition (loose matching of FAT/WATER anywhere needs one).
DIXON_HINTS = frozenset({"DIXON", "MDIXON", "FLEX", "IDEAL", "LAVA", "QDIXON"})
