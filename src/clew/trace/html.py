"""A picture of a trace or a Service: one self-contained HTML page with an SVG tree (no fetches).

The outcomes of a trace share their first hops; merged by common prefix they make a tree whose
root is the packet, whose inner nodes are the rules that acted (hook, table/chain, action) and
whose leaves are the outcomes. A node that splits the walk labels its branches with their
probabilities; DNAT and masquerade hops, drops and deliveries are coloured and said in a legend;
the full rule text is in each node's ``<title>`` (shown on hover). ``clew explain service
--html`` draws the Service's tree the same way (frontends → chains → endpoints with shares).

The layout is computed here (pure, tested without a browser). A few lines of script run on load
and record how many nodes the browser actually laid out with a non-empty box
(``data-drawn`` on ``<body>``), so a headless browser's DOM dump tells whether it drew them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from clew.trace.explain import Explanation
from clew.trace.packet import Outcome, TraceResult

BOX_W, BOX_H, GAP_X, GAP_Y = 270, 44, 20, 34
CHARS = 40  # per line of a box, at 11px
COLOURS = {
    "packet": "#dfe7f5",
    "hop": "#f4f4f4",
    "dnat": "#ffe0b3",
    "masquerade": "#f9d3e6",
    "routing": "#e6f0e6",
    "accept": "#c9f2c9",
    "drop": "#f7b9b9",
    "uncertain": "#fff3a8",
}
LEGEND = (
    ("dnat", "DNAT"),
    ("masquerade", "masquerade / SNAT"),
    ("accept", "delivered"),
    ("drop", "dropped / refused"),
    ("uncertain", "rests on assumptions"),
)


@dataclass
class Node:
    label: str
    title: str
    kind: str
    edge: str = ""  # the label of the edge from the parent (a branch's probability)
    children: list[Node] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0

    def child(self, label: str, title: str, kind: str) -> Node:
        for c in self.children:
            if (c.label, c.title) == (label, title):
                return c
        node = Node(label, title, kind)
        self.children.append(node)
        return node


def _hop_kind(action: str, hook: str) -> str:
    if hook == "routing":
        return "routing"
    if action.startswith("DNAT"):
        return "dnat"
    if action.startswith(("MASQUERADE", "SNAT")):
        return "masquerade"
    return "hop"


def _leaf(o: Outcome) -> tuple[str, str, str]:
    to = f" → {o.dnat}" if o.dnat else ""
    if o.verdict == "ACCEPT":
        label = f"delivered{to}, seen from {o.source_seen}"
        kind = "accept"
    else:
        label = f"{o.verdict.lower()}{to}"
        kind = "drop"
    title = o.reason
    if o.assumptions:
        kind = "uncertain" if o.verdict == "ACCEPT" else kind
        label = f"IF assumed: {label}"
        title += "\nassumed:\n" + "\n".join(f"- {a.location}: {a.what}" for a in o.assumptions)
    return label, title, kind


def trace_tree(result: TraceResult) -> Node:
    p = result.packet
    root = Node(f"{p.proto} {p.src} → {p.dst}:{p.dport}", f"it {result.entry}", "packet")
    for o in result.outcomes:
        node = root
        for h in o.hops:
            if h.quiet:
                continue
            where = "routing" if h.hook == "routing" else f"{h.hook} {h.table}/{h.chain}"
            node = node.child(f"{where}: {h.action}", h.rule, _hop_kind(h.action, h.hook))
        label, title, kind = _leaf(o)
        leaf = Node(label, title, kind, edge=f"{o.probability:.1%}")
        node.children.append(leaf)
    _probabilities(root, result.outcomes)
    return root


def _probabilities(root: Node, outcomes: list[Outcome]) -> None:
    """Label each branch (a node with several children) with the share of outcomes below it."""

    def total(n: Node) -> float:
        if not n.children:
            return float(n.edge.rstrip("%") or 0) / 100
        return sum(total(c) for c in n.children)

    def walk(n: Node) -> None:
        if len(n.children) > 1:
            for c in n.children:
                if c.children:
                    c.edge = f"{total(c):.1%}"
        for c in n.children:
            walk(c)

    walk(root)


def explain_tree(ex: Explanation) -> Node:
    root = Node(f"Service {ex.query}", "", "packet")
    for port in ex.ports:
        pnode = root.child(f"port {port.spn}", "", "hop")
        for f in port.frontends:
            front = pnode.child(f"{f['kind']} {f['address']}", f"jumps to {f['chain']}", "hop")
            for c in port.chains:
                if c.chain != f["chain"] and not f["chain"].startswith(("KUBE-EXT", "KUBE-FW", "KUBE-XLB")):
                    continue
                cnode = front.child(f"{c.chain} ({c.kind})", "\n".join(c.masquerade) or "no masquerade rule", "hop")
                if c.masquerade:
                    cnode.kind = "masquerade"
                for b in c.branches:
                    leaf = cnode.child(f"{b.endpoint}", b.rule, "dnat")
                    leaf.edge = f"{b.share:.1%}"
        for flt in port.filters:
            pnode.child(f"filter {flt['chain']}: {flt['verdict']}", flt["comment"], "drop")
    return root


def _layout(root: Node) -> tuple[list[Node], float, float]:
    """Leaves left to right, parents centred over their children, depth downwards."""
    nodes: list[Node] = []
    next_x = [0.0]
    depth_max = [0]

    def place(n: Node, depth: int) -> None:
        nodes.append(n)
        n.y = depth * (BOX_H + GAP_Y) + 10
        depth_max[0] = max(depth_max[0], depth)
        if not n.children:
            n.x = next_x[0]
            next_x[0] += BOX_W + GAP_X
            return
        for c in n.children:
            place(c, depth + 1)
        n.x = (n.children[0].x + n.children[-1].x) / 2

    place(root, 0)
    width = max(next_x[0], BOX_W + GAP_X) + 20
    height = (depth_max[0] + 1) * (BOX_H + GAP_Y) + 20
    return nodes, width, height


def _cut(text: str, n: int = 34) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _svg(root: Node) -> str:
    nodes, width, height = _layout(root)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" role="img">']
    for n in nodes:
        for c in n.children:
            x1, y1, x2, y2 = n.x + BOX_W / 2 + 10, n.y + BOX_H, c.x + BOX_W / 2 + 10, c.y
            parts.append(f'<line class="edge" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}"/>')
            if c.edge:
                mx, my = (x1 + x2) / 2 + 4, (y1 + y2) / 2
                parts.append(f'<text class="prob" x="{mx:.0f}" y="{my:.0f}">{html.escape(c.edge)}</text>')
    for i, n in enumerate(nodes):
        label = html.escape(n.label)
        lines = [n.label[:CHARS], _cut(n.label[CHARS:], CHARS)] if len(n.label) > CHARS else [n.label]
        text = "".join(
            f'<tspan x="{n.x + 16:.0f}" dy="{14 if k else 0}">{html.escape(line)}</tspan>'
            for k, line in enumerate(lines)
            if line
        )
        parts.append(
            f'<g class="node {n.kind}" data-kind="{n.kind}" data-label="{label}" id="n{i}">'
            f"<title>{html.escape(n.title or n.label)}</title>"
            f'<rect x="{n.x + 10:.0f}" y="{n.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{COLOURS.get(n.kind, "#fff")}"/>'
            f'<text x="{n.x + 16:.0f}" y="{n.y + 18:.0f}">{text}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


_SCRIPT = """
window.addEventListener('load', function () {
  var drawn = 0;
  document.querySelectorAll('g.node').forEach(function (g) {
    var b = g.getBBox();
    if (b.width > 0 && b.height > 0) { drawn += 1; }
  });
  document.body.setAttribute('data-drawn', String(drawn));
});
"""


def page(title: str, root: Node, lines: list[str]) -> str:
    """The whole page: a heading, a legend, the tree, and the text lines below it."""
    legend = "".join(f'<span class="key" style="background:{COLOURS[k]}">{html.escape(t)}</span>' for k, t in LEGEND)
    body = "\n".join(html.escape(line) for line in lines)
    count = sum(1 for _ in _layout(root)[0])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font:13px system-ui,sans-serif;margin:16px}"
        ".edge{stroke:#777;stroke-width:1.5}.prob{font-size:12px;fill:#333;font-weight:bold}"
        "rect{stroke:#555}.node text{font-size:11px}.key{padding:2px 6px;margin-right:6px;border:1px solid #555}"
        "pre{background:#fafafa;border:1px solid #ddd;padding:8px;overflow:auto}"
        f'</style></head><body data-nodes="{count}"><h1>{html.escape(title)}</h1><p>{legend}</p>'
        f"{_svg(root)}<pre>{body}</pre><script>{_SCRIPT}</script></body></html>\n"
    )


def trace_page(result: TraceResult, story: str) -> str:
    p = result.packet
    return page(f"clew trace: {p.proto} {p.src} → {p.dst}:{p.dport}", trace_tree(result), story.splitlines())


def explain_page(ex: Explanation, text: str) -> str:
    return page(f"clew explain service {ex.query}", explain_tree(ex), text.splitlines())
