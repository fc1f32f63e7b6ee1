"""vispy's shader parsing without its quadratic comment strip: a third of every colour bar's first draw.

Before vispy (``gloo.Program._parse_variables_from_code``) looks for a shader program's variables it removes the
``//`` comments with ``re.sub(r'(.*)(//.*)', r'\\1', code, flags=re.M)``. On a line without ``//`` the greedy
group is retried from every position of the line, so the cost grows with the square of each line's length: on a
2-core AMD EPYC this one call took 20 ms (29 ms inside napari's draw) on the 85 KB program of a colour bar's tick
labels, which vispy parses at the colour bar's first draw, of the 100 ms that draw stalled the GUI thread (the
longest stall left in the Predict widget's first Run). vispy's own issue on that code: vispy/vispy#2280.

:func:`install` gives that one vispy module a ``re`` whose ``sub`` makes this one substitution line by line (the
same text: each line cut at its last ``//``, as the greedy group does) and is the standard module for everything
else. It does so only where vispy's function is the one this was checked against (the hash of its source, so a
changed vispy keeps its own code) and not with ``NAPARI_SFF_VISPY_SHIM=0``.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import types

from napari_sff.imports import switched_off

#: The substitution vispy makes, as it makes it (pattern, replacement, flags).
COMMENT_PATTERN = r"(.*)(//.*)"
COMMENT_REPLACEMENT = r"\1"
#: sha256 of ``inspect.getsource(vispy.gloo.program.Program._parse_variables_from_code)`` in the vispy versions
#: this was checked against (0.17.0): the only call of ``re.sub`` there is the comment strip.
CHECKED_SOURCE_SHA256 = ("cc88f4b9ba7a1f0c542736bafddd9241d6c3e9e9afc4f7ddff2c9fca70491428",)
#: Set to 0 to leave vispy as it is.
ENV_SWITCH = "NAPARI_SFF_VISPY_SHIM"


def strip_line_comments(code: str) -> str:
    """``re.sub(COMMENT_PATTERN, COMMENT_REPLACEMENT, code, flags=re.M)`` in time linear in ``code``: each line
    (``.`` stops only at ``\\n``) is cut at its last ``//``; a line without one is kept."""
    lines = code.split("\n")
    for i, line in enumerate(lines):
        head, found, _ = line.rpartition("//")
        if found:
            lines[i] = head
    return "\n".join(lines)


class LinearCommentStrip(types.ModuleType):
    """The ``re`` module, except that the comment strip vispy makes runs in linear time."""

    def __init__(self) -> None:
        super().__init__("re", "re, with vispy's comment strip in linear time (napari_sff.widgets._shader_parsing)")

    def __getattr__(self, name: str):
        return getattr(re, name)

    @staticmethod
    def sub(pattern, repl, string, count=0, flags=0):
        if (pattern == COMMENT_PATTERN and repl == COMMENT_REPLACEMENT and count == 0 and flags == re.M
                and isinstance(string, str)):
            return strip_line_comments(string)
        return re.sub(pattern, repl, string, count=count, flags=flags)


def install() -> bool:
    """Give vispy's shader-program module :class:`LinearCommentStrip` as its ``re`` (once per process; safe to
    call again). False where vispy's parsing function is not the one checked, vispy is missing or
    ``NAPARI_SFF_VISPY_SHIM=0``: vispy then runs as it is."""
    if switched_off(ENV_SWITCH):
        return False
    try:
        from vispy.gloo import program
    except ImportError:
        return False
    if isinstance(program.re, LinearCommentStrip):
        return True
    try:
        source = inspect.getsource(program.Program._parse_variables_from_code)
    except (AttributeError, OSError, TypeError):  # renamed, or no source shipped: nothing is known of it
        return False
    if hashlib.sha256(source.encode()).hexdigest() not in CHECKED_SOURCE_SHA256 or program.re is not re:
        return False
    program.re = LinearCommentStrip()
    return True
