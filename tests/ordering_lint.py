"""A lint for iteration in hash order: iterating a set (or frozenset) visits its items in an
order that depends on PYTHONHASHSEED for strings, bytes and tuples of them, so anything that
reaches the log, a digest or an action queue that way differs between processes.

Flagged, in every module of the package: a `for` loop, a comprehension, `list()`, `tuple()`,
`enumerate()`, `iter()`, `zip()`, `"".join()`, `min`/`max` with a `key` (ties go to the first
seen), `.pop()` and `next(iter(...))` over an expression that is a set — a set literal or
comprehension, `set(...)`/`frozenset(...)`, a set operator (`|`, `&`, `-`, `^`) on one, a
`.keys()`/`.items()` view combined by a set operator, or a name or attribute that the module
assigns or annotates as a set. Wrapping it in `sorted(...)` is the fix; an iteration whose
result cannot depend on the order (a sum, a membership test, `any`) can say so with a
`# order-free` comment on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ORDER_FREE = "# order-free"
SET_CALLS = {"set", "frozenset"}
ORDERED_CONSUMERS = {"list", "tuple", "enumerate", "iter", "zip", "next"}
SET_TYPES = ("set", "frozenset", "Set", "FrozenSet", "AbstractSet", "MutableSet")


def _annotation_is_set(node: ast.AST | None) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr in SET_TYPES
    if isinstance(node, ast.Name):
        return node.id in SET_TYPES
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "set[int]"
        return node.value.split("[")[0].strip() in SET_TYPES
    return False


def _name_of(node: ast.AST) -> str | None:
    """`x` for a name, `.x` for an attribute (any object's: `self.x`, `state.x`)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return "." + node.attr
    return None


class _Sets(ast.NodeVisitor):
    """The names and attributes a module assigns or annotates as sets."""

    def __init__(self, fields: bool = False) -> None:
        self.names: set[str] = set()
        self.fields = fields  # a class body: its names are reached as attributes

    def _target(self, target: ast.AST, value: ast.AST | None, annotation: ast.AST | None) -> None:
        name = _name_of(target)
        if name is None:
            return
        if _annotation_is_set(annotation) or (value is not None and _is_set_expr(value, set())):
            self.names.add(name)
            if self.fields and isinstance(target, ast.Name):
                self.names.add("." + target.id)
        if isinstance(value, ast.Call) and _name_of(value.func) == "field":
            for kw in value.keywords:
                if kw.arg == "default_factory" and _name_of(kw.value) in SET_CALLS:
                    self.names.add(name)
                    if self.fields:
                        self.names.add("." + name.lstrip("."))

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self._target(t, node.value, None)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._target(node.target, node.value, node.annotation)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if _annotation_is_set(node.annotation):
            self.names.add(node.arg)


def _is_set_expr(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, (ast.Set, ast.SetComp)):
        return True
    if isinstance(node, ast.Call):
        fn = _name_of(node.func)
        if fn in SET_CALLS:
            return True
        if isinstance(node.func, ast.Attribute) and node.func.attr in (
                "union", "intersection", "difference", "symmetric_difference", "copy") \
                and _is_set_expr(node.func.value, names):
            return True
        return False
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.BitAnd, ast.Sub,
                                                            ast.BitXor)):
        return any(_is_set_expr(x, names) or _is_view(x) for x in (node.left, node.right))
    name = _name_of(node)
    return name is not None and name in names


def _is_view(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("keys", "items") and not node.args)


ORDER_FREE_CONSUMERS = {"sorted", "set", "frozenset", "any", "all", "len", "sum", "min", "max"}


class _Finder(ast.NodeVisitor):
    """Walks a module with the set-typed names of each scope: a function's own assignments and
    arguments, the module's, and every attribute the module assigns or annotates as a set."""

    def __init__(self, lines: list[str], module: set[str]) -> None:
        self.lines = lines
        self.scopes = [module]
        self.exempt: set[int] = set()  # comprehensions an order-free consumer takes whole
        self.out: list[tuple[int, str]] = []

    def flag(self, node: ast.AST, what: str) -> None:
        if _is_set_expr(node, self.scopes[-1]) and ORDER_FREE not in self.lines[node.lineno - 1]:
            self.out.append((node.lineno, f"{what} over a set ({ast.unparse(node)}): sort it"))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        local = _Sets()
        for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
            local.visit(arg)
        for stmt in node.body:
            local.visit(stmt)
        module_attrs = {n for n in self.scopes[0] if n.startswith(".")}
        self.scopes.append(local.names | module_attrs | self.scopes[0])
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.flag(node.iter, "for loop")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp
                       | ast.GeneratorExp) -> None:
        if id(node) not in self.exempt and not isinstance(node, ast.SetComp):
            for gen in node.generators:
                self.flag(gen.iter, "comprehension")
        self.generic_visit(node)

    visit_ListComp = visit_DictComp = visit_GeneratorExp = visit_SetComp = _comprehension

    def visit_Call(self, node: ast.Call) -> None:
        fn = _name_of(node.func)
        keyed = any(kw.arg == "key" for kw in node.keywords)
        if fn in ORDER_FREE_CONSUMERS and not (fn in ("min", "max") and keyed):
            for arg in node.args:
                if isinstance(arg, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
                    self.exempt.add(id(arg))
        if fn in ORDERED_CONSUMERS:
            for arg in node.args:
                inner = arg.args[0] if (isinstance(arg, ast.Call) and _name_of(arg.func)
                                        == "iter" and arg.args) else arg
                self.flag(inner, f"{fn}()")
        elif fn in ("min", "max") and keyed:
            for arg in node.args:
                self.flag(arg, f"{fn}(key=...)")
        elif fn == ".join" and node.args:
            self.flag(node.args[0], "str.join")
        elif fn == ".pop" and isinstance(node.func, ast.Attribute) and not node.args:
            self.flag(node.func.value, ".pop()")
        self.generic_visit(node)


def findings(path: Path) -> list[tuple[int, str]]:
    src = path.read_text()
    tree = ast.parse(src)
    module, fields = _Sets(), _Sets(fields=True)
    for node in ast.walk(tree):  # attributes anywhere; plain names at module level only
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(t, ast.Attribute):
                    module._target(t, node.value, getattr(node, "annotation", None))
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            for item in stmt.body:  # fields: reached as attributes
                if isinstance(item, (ast.Assign, ast.AnnAssign)):
                    fields.visit(item)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            module.visit(stmt)
    finder = _Finder(src.splitlines(), module.names | {n for n in fields.names
                                                        if n.startswith(".")})
    finder.visit(tree)
    return sorted(finder.out)


def lint(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for line, message in findings(path):
            out.append(f"{path}:{line}: {message}")
    return out
