"""When a lesson's shape (campaigns.content.shapes) may stand for a person's rendering.

A shape is rendered with sentinels in place of what varies per person (the first name, the
message's links); filling in a person's values is exact only if no template can tell one
value from another except by printing it. Two checks here:

- `templates_allow_shapes`: a static reading of the templates (Jinja's parser). The person's
  values may only be printed (`{{ first_name }}`, `{{ links.contact }}`, `{{ a.url }}` in a
  loop over `question.answers`), chosen with `or`/`and`, or tested for truth (`{% if %}`).
  Any comparison, filter, call, concatenation, assignment, capture (macro, `set` block,
  `filter` block, `call` block), a dynamic include, or any template code inside CSS (a
  `<style>` element or a `style` attribute, which the CSS inliner interprets) rules the
  shape out: a sentinel cannot show what a literal comparison or a selector would see.
- `name_fits` / `link_fits`: a value is filled in only if every escape and rewrite the
  renderer applies leaves it as it is (no HTML-special or control characters, no
  whitespace the one-line collapse would change, nothing the link rewriter would take
  for a URL).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import jinja2
from jinja2 import nodes

# What the renderer's context holds per person, and in the layouts what is made from it.
VALUES = frozenset({"first_name", "subject", "preheader", "body"})
LINKS = "links"
QUESTION = "question"
# Names that reach rendered blocks or the loop's neighbours: never with a person's values.
FORBIDDEN = frozenset({"self", "super", "caller", "varargs", "kwargs"})
CAPTURING = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)

_STYLE_ELEMENT = re.compile(r"<style\b.*?(?:</style\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_STYLE_ATTR = re.compile(r"""\bstyle\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)

_URL_IN_TEXT = re.compile(r"https?://", re.IGNORECASE)
# Our links: an absolute http(s) URL of characters no escape or rewrite touches, ending
# where the text rewriter's URL ends (not in sentence punctuation).
_LINK = re.compile(r"https?://[A-Za-z0-9._~:/%@+-]*[A-Za-z0-9_~/%@+-]")
_NAME_BAD = frozenset("&<>\"'\u00a0")
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Cn", "Zl", "Zp"})


class NotShapeable(Exception):
    """The templates use a person's values in a way a sentinel cannot stand for."""


def name_fits(name: str) -> bool:
    """A non-empty first name that comes out of every escape and collapse unchanged."""
    if not name or name != name.strip() or "  " in name or _URL_IN_TEXT.search(name):
        return False
    for ch in name:
        if ch in _NAME_BAD or (ch.isspace() and ch != " "):
            return False
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return False
    return True


def link_fits(url: str) -> bool:
    return _LINK.fullmatch(url) is not None


def templates_allow_shapes(
    env: jinja2.Environment, names: Iterable[str], strings: Iterable[str], *, html: bool
) -> None:
    """Raise NotShapeable unless the templates `names` (followed through includes,
    imports and extends) and the template `strings` use per-person values only as above.
    A template that does not exist is no objection: rendering it fails the same for all."""
    names, strings = list(names), list(strings)
    checker = _Checker(env, html)
    while True:  # again if a loop over the answers turned up after a use was read
        known = set(checker.loop_vars)
        checker.seen.clear()
        for name in names:
            checker.template(name)
        for source in strings:
            checker.source(source, html=False)
        if checker.loop_vars == known:
            return


class _Checker:
    def __init__(self, env: jinja2.Environment, html: bool):
        self.env = env
        self.html = html
        self.seen: set[tuple[str, bool]] = set()
        self.loop_vars: set[str] = set()

    def template(self, name: str, captured: bool = False) -> None:
        if (name, captured) in self.seen:
            return
        self.seen.add((name, captured))
        try:
            source, _, _ = self.env.loader.get_source(self.env, name)
        except jinja2.TemplateNotFound:
            return
        self.source(source, html=self.html and not name.endswith(".txt"), captured=captured)

    def source(self, source: str, *, html: bool, captured: bool = False) -> None:
        if html:
            _no_code_in_css(self.env, source)
        try:
            tree = self.env.parse(source)
        except jinja2.TemplateSyntaxError:
            return  # rendering raises the same for everyone
        # Loop variables first: a use may come before its loop in the tree walk's order.
        for loop in tree.find_all(nodes.For):
            if _is_answers(loop.iter):
                if not isinstance(loop.target, nodes.Name):
                    raise NotShapeable("answers unpacked in a loop")
                self.loop_vars.add(loop.target.name)
        self.visit(tree, "other", captured)

    def visit(self, node: nodes.Node, ctx: str, captured: bool) -> None:
        if isinstance(node, CAPTURING):
            captured = True
        if isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            imported = isinstance(node, (nodes.Import, nodes.FromImport))
            self.reference(node.template, captured or imported)
            for child in node.iter_child_nodes(exclude=("template",)):
                self.visit(child, "other", captured)
            return
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                self.visit(child, "other" if captured else "output", captured)
            return
        if isinstance(node, nodes.If):
            self.visit(node.test, "test", captured)
            for child in node.iter_child_nodes(exclude=("test",)):
                self.visit(child, "other", captured)
            return
        if isinstance(node, nodes.For):
            if _is_answers(node.iter):
                if node.recursive:
                    raise NotShapeable("recursive loop over answers")
            else:
                self.visit(node.iter, "other", captured)
            if node.test is not None:
                self.visit(node.test, "test", captured)
            for child in (*node.body, *node.else_):
                self.visit(child, "other", captured)
            return
        if isinstance(node, nodes.CondExpr):
            self.visit(node.test, "test", captured)
            for child in (node.expr1, node.expr2):
                if child is not None:
                    self.visit(child, ctx, captured)
            return
        if isinstance(node, (nodes.And, nodes.Or)):
            self.visit(node.left, ctx, captured)
            self.visit(node.right, ctx, captured)
            return
        if isinstance(node, nodes.Not):
            self.visit(node.node, "test" if ctx == "test" else "other", captured)
            return
        if self.value_use(node, ctx):
            return
        if isinstance(node, nodes.Name):
            self.bare_name(node, ctx)
            return
        for child in node.iter_child_nodes():
            self.visit(child, "other", captured)

    def value_use(self, node: nodes.Node, ctx: str) -> bool:
        """True if `node` is an allowed use of a per-person value (raises if disallowed)."""
        if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return False
        base = node.node
        if not isinstance(base, nodes.Name):
            return False
        attr = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
        if base.name == LINKS or (base.name in self.loop_vars and attr == "url"):
            if attr is None or ctx not in ("output", "test"):
                raise NotShapeable(f"{base.name}.{attr} used other than printed or tested")
            return True
        if base.name in self.loop_vars:
            if attr != "value":
                raise NotShapeable(f"{base.name}.{attr} of an answer")
            return True
        if base.name == QUESTION:
            if attr not in ("low", "high"):
                raise NotShapeable(f"question.{attr} used outside a loop")
            return True
        if base.name == "loop" and attr in ("previtem", "nextitem", "changed"):
            raise NotShapeable(f"loop.{attr}")
        return False

    def bare_name(self, node: nodes.Name, ctx: str) -> None:
        name = node.name
        if name in FORBIDDEN:
            raise NotShapeable(f"{name} in a template")
        if name in VALUES or name == QUESTION:
            if (
                node.ctx != "load"
                or ctx not in ("output", "test")
                or (name == QUESTION and ctx != "test")
            ):
                raise NotShapeable(f"{name} used other than printed or tested")
        elif name == LINKS or name in self.loop_vars:
            raise NotShapeable(f"{name} used whole")

    def reference(self, template: nodes.Expr, captured: bool) -> None:
        names = _const(template)
        if isinstance(template, (nodes.List, nodes.Tuple)):
            names = [_const(item) for item in template.items]
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise NotShapeable("a template named by an expression")
        for name in names:
            self.template(name, captured)


def _is_answers(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.node.name == QUESTION
        and node.attr == "answers"
    )


def _const(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None


def _no_code_in_css(env: jinja2.Environment, source: str) -> None:
    """The CSS inliner reads `<style>` and `style=""`: a value there could match a
    selector or change a declaration, which a sentinel never would."""
    marks = (env.variable_start_string, env.block_start_string)
    for pattern in (_STYLE_ELEMENT, _STYLE_ATTR):
        for found in pattern.finditer(source):
            if any(mark in found.group(0) for mark in marks):
                raise NotShapeable("template code inside CSS")
