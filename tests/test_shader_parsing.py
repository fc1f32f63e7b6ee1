"""vispy's shader parsing with the comment strip in linear time (napari_sff.widgets._shader_parsing): the same
text as vispy's regular expression, the same variables found, and vispy left alone where it is not the vispy
this was checked against."""

from __future__ import annotations

import re

import pytest

vispy_program = pytest.importorskip("vispy.gloo.program")

from napari_sff.widgets import _shader_parsing  # noqa: E402


def vispy_shader_codes() -> list[str]:
    """The sources of real vispy programs (a colour bar's tick labels are a TextVisual: 77 KB of fragment
    shader), compiled without a GL context."""
    from vispy.visuals import ImageVisual, MarkersVisual, TextVisual

    codes = []
    for visual in (TextVisual("0 50 100"), ImageVisual(), MarkersVisual()):
        visual._program.build_if_needed()
        codes += [shader.code for shader in visual._program.shaders]
    return codes


EDGE_CASES = [
    "",
    "no comment at all",
    "// only a comment",
    "code; // comment // and a second",
    "a // b // c\r\nx\n//y\n",  # \r is not a line end for '.': it goes with the comment
    "uniform float u; // float v;\nuniform vec2 w;//\n\n\n// attribute vec3 gone;",
    "x = 1 / 2; /* block */ y = 3 /// three slashes",
    "ünïcode // ßtraße\n   // indented\nend",
    "no newline at the end // comment",
]


@pytest.mark.parametrize("code", EDGE_CASES)
def test_the_linear_strip_gives_vispys_text_on_edge_cases(code):
    expected = re.sub(_shader_parsing.COMMENT_PATTERN, _shader_parsing.COMMENT_REPLACEMENT, code, flags=re.M)
    assert _shader_parsing.strip_line_comments(code) == expected
    assert _shader_parsing.LinearCommentStrip.sub(_shader_parsing.COMMENT_PATTERN,
                                                  _shader_parsing.COMMENT_REPLACEMENT, code, flags=re.M) == expected


def test_the_linear_strip_gives_vispys_text_on_real_programs():
    codes = vispy_shader_codes()
    assert max(len(code) for code in codes) > 50_000  # the tick labels' program is among them
    assert sum("//" in code for code in codes) >= 3  # and they have comments to strip
    for code in codes:
        assert _shader_parsing.strip_line_comments(code) == re.sub(r"(.*)(//.*)", r"\1", code, flags=re.M)


def test_any_other_substitution_is_the_standard_one():
    strip = _shader_parsing.LinearCommentStrip()
    assert strip.sub(r"(.*)(//.*)", r"\2", "a // b") == "// b"  # another replacement: re's answer
    assert strip.sub(r"(.*)(//.*)", r"\1", "a // b\nc // d", count=1, flags=re.M) == "a \nc // d"
    assert strip.sub(r"o", "0", "foo") == "f00"
    assert strip.compile is re.compile and strip.M == re.M  # everything else is re's


@pytest.fixture
def plain_vispy(monkeypatch):
    """vispy's module as imported, restored afterwards whatever the test installs."""
    monkeypatch.setattr(vispy_program, "re", re)
    monkeypatch.delenv(_shader_parsing.ENV_SWITCH, raising=False)
    return vispy_program


def test_install_finds_the_same_variables_as_vispy(plain_vispy):
    from vispy.visuals import TextVisual

    if not vispy_was_checked():
        pytest.skip("this vispy's parsing function is not the one checked: the shim leaves it alone")

    visual = TextVisual("0 50 100")
    visual._program.build_if_needed()
    vertex, fragment = (shader.code for shader in visual._program.shaders)
    expected = plain_vispy.Program(vertex, fragment)._code_variables  # vispy with the standard re
    assert len(expected) > 10
    assert _shader_parsing.install()
    assert isinstance(plain_vispy.re, _shader_parsing.LinearCommentStrip)
    assert _shader_parsing.install()  # once: a second call keeps it
    assert plain_vispy.Program(vertex, fragment)._code_variables == expected


def test_install_leaves_a_vispy_it_was_not_checked_against(plain_vispy, monkeypatch):
    monkeypatch.setattr(_shader_parsing, "CHECKED_SOURCE_SHA256", ("0" * 64,))  # as if vispy had changed it
    assert not _shader_parsing.install()
    assert plain_vispy.re is re


def test_install_can_be_switched_off(plain_vispy, monkeypatch):
    monkeypatch.setenv(_shader_parsing.ENV_SWITCH, "0")
    assert not _shader_parsing.install()
    assert plain_vispy.re is re


def vispy_was_checked() -> bool:
    """This vispy's parsing function is one the shim was checked against (the hash of its source)."""
    import hashlib
    import inspect

    source = inspect.getsource(vispy_program.Program._parse_variables_from_code)
    return hashlib.sha256(source.encode()).hexdigest() in _shader_parsing.CHECKED_SOURCE_SHA256


def test_install_acts_exactly_where_vispy_is_the_checked_one(plain_vispy):
    """A newer vispy (napari's pins move) keeps its own code until its function is checked and its hash added."""
    assert _shader_parsing.install() == vispy_was_checked()
    assert isinstance(plain_vispy.re, _shader_parsing.LinearCommentStrip) == vispy_was_checked()
