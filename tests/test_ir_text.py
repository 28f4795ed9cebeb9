"""The IR text form: parse_graph is the exact inverse of print_graph, and malformed
text fails with the line it is on."""
import math

import pytest
from helpers_ir import EXAMPLES, example_graph

from mlc.ir.graph import Builder, Group, TensorType, print_graph, verify
from mlc.ir.pipeline import optimize
from mlc.ir.text import IRParseError, parse_graph


@pytest.mark.parametrize("name", EXAMPLES)
def test_round_trip_on_lowered_examples(name):
    g = example_graph(name)
    text = print_graph(g)
    back = parse_graph(text)
    assert back == g
    assert print_graph(back) == text


@pytest.mark.parametrize("name", EXAMPLES)
def test_round_trip_with_kernel_groups(name):
    g, _ = optimize(example_graph(name))
    assert g.groups
    text = print_graph(g)
    assert parse_graph(text) == g
    assert print_graph(parse_graph(text)) == text


def test_unfused_graph_prints_no_group_lines():
    assert "group" not in print_graph(example_graph("titanic"))


def test_attribute_literals_round_trip():
    b = Builder("lits")
    x = b.input("x", TensorType("f32", ("B", 2)))
    w = b.param("w", (2,), {"kind": "const", "values": [0.1, -2.0]})
    c = b.op("const", value=[[math.nan, -math.inf], [-0.0, 1e-30]])
    i = b.op("const", value=[3, -4], dtype="i32")
    b.output("s", b.op("scale", b.op("add", x, w), factor=-2.5e-07))
    b.output("c", c)
    b.output("i", i)
    text = print_graph(b.graph)
    back = parse_graph(text)
    assert print_graph(back) == text
    value = back.ops[0].attrs["value"]
    assert math.isnan(value[0][0]) and value[0][1] == -math.inf and math.copysign(1, value[1][0]) == -1
    assert back.ops[1].attrs == {"value": [3, -4], "dtype": "i32"}
    assert back.ops[3].attrs == {"factor": -2.5e-07}
    assert back.params["w"].init == {"kind": "const", "values": [0.1, -2.0]}


def test_comments_and_blank_lines_are_ignored():
    text = "# a comment\ngraph g {\n\n  input %x : f32[B,3]\n  # note\n  %0 = relu(%x) : f32[B,3]\n  output y = %0\n}\n"
    g = parse_graph(text)
    assert [op.opcode for op in g.ops] == ["relu"] and g.outputs == {"y": "0"}


GOOD = """graph g {
  input %x : f32[B,3]
  param %w : f32[3,2] = glorot()
  %0 = matmul(%x, %w) : f32[B,2]
  %1 = relu(%0) : f32[B,2]
  output y = %1
}
"""


def _break(line_no: int, new: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, line, fragment", [
    ("", 1, "empty text"),
    ("graf g {\n}\n", 1, "expected `graph NAME {`"),
    (_break(2, "  input x : f32[B,3]"), 2, "malformed input line"),
    (_break(2, "  input %x : f64[B,3]"), 2, "is not a type"),
    (_break(3, "  param %w : f32[3,2] = glorot(scale=)"), 3, "cannot read"),
    (_break(3, "  param %w : f32[3,2] = glorot(scale=__import__('os'))"), 3, "is not a literal"),
    (_break(4, "  %0 = matmul(%x, %v) : f32[B,2]"), 4, "%v is not defined"),
    (_break(4, "  %0 = matmal(%x, %w) : f32[B,2]"), 4, "unknown op `matmal`"),
    (_break(4, "  %0 = matmul(%x) : f32[B,2]"), 4, "takes 2 arguments, got 1"),
    (_break(4, "  %0 = matmul(%x, %w) : f32[B,3]"), 4, "written as f32[B,3] but matmul gives f32[B,2]"),
    (_break(5, "  %0 = relu(%0) : f32[B,2]"), 5, "%0 is defined twice"),
    (_break(5, "  %1 = relu(%0) {alpha=} : f32[B,2]"), 5, "cannot read"),
    (_break(5, "  %1 = relu(%0) f32[B,2]"), 5, "malformed % line"),
    (_break(6, "  output y = %9"), 6, "refers to undefined %9"),
    (_break(6, "  outputs y = %1"), 6, "expected one of"),
    (GOOD.replace("}\n", ""), 7, "missing the closing `}`"),
    (GOOD + "  %2 = relu(%1) : f32[B,2]\n", 8, "text after the closing"),
    (_break(6, "  group k0 elementwise(%1, %q)"), 6, "%q is neither an op nor a param"),
])
def test_malformed_text_names_the_line(text, line, fragment):
    with pytest.raises(IRParseError) as e:
        parse_graph(text)
    assert e.value.line == line
    assert str(e.value).startswith(f"line {line}: ")
    assert fragment in str(e.value)


def test_type_checking_can_be_switched_off():
    text = _break(4, "  %0 = matmul(%x, %w) : f32[B,3]")
    g = parse_graph(text, check_types=False)
    assert str(g.ops[0].type) == "f32[B,3]"


def test_group_members_must_be_disjoint():
    b = Builder("g")
    x = b.input("x", TensorType("f32", ("B",)))
    r = b.op("relu", x)
    b.output("y", b.op("tanh", r))
    b.graph.groups = [Group("k0", "elementwise", (r,)), Group("k1", "elementwise", (r,))]
    text = print_graph(b.graph)
    with pytest.raises(IRParseError, match="already in another group"):
        parse_graph(text)
    with pytest.raises(Exception, match="two groups"):
        verify(b.graph)
