"""Every use our code makes of a library's names, found by reading the code.

``find_uses()`` parses each module of ours (``OUR_PACKAGES``, ``OUR_FILES``) and reports, for
the libraries of ``LIBRARIES``, each name of theirs the code reaches, as a :class:`Use`:

- **imports**: ``from m import n`` reaches ``m:n`` (a module imported is not itself a use:
  the names used from it are);
- **attributes** read, called, assigned or deleted (``x.a``; ``getattr``, ``hasattr``,
  ``setattr`` and ``delattr`` with a literal name; ``vars(x).get("a")`` and
  ``x.__dict__.get("a")``), where ``x`` is one of their modules, classes or instances,
  ``self`` in a class of ours with one of theirs among its bases included;
- **overrides**: a method or class attribute that a class of ours defines, or an instance
  attribute it assigns, when a class of theirs later in its MRO has that name too.

What ``x`` is comes from how it was bound: an import, a class or function of ours, ``self``
and ``cls`` in a method, ``super()``, an annotation (a parameter's, a variable's, an
attribute's, a function's return type, ``cast``), an ``isinstance()`` check that guards it,
an assignment from any of those, the exception an ``except`` clause names. Attributes are
looked up as Python looks them up, along the MRO: class members in ``vars()``, instance
attributes in the ``self.a = ...`` assignments and the annotations of each class's source;
their types come from the library's own annotations. An attribute that the declared class
lacks is looked for on its subclasses (SQLAlchemy's ``compile()`` is declared to return a
``Compiled`` and returns a ``SQLCompiler``); one that none has is still the library's, named
on the declared class. A ``typing.Protocol`` of theirs describes somebody else's object (a
DB-API driver's), so what the code reaches through one is not theirs.

Each use is ``private`` (an underscored name), ``override`` (a public name that a class of
ours overrides, not one the library documents as a hook or declares abstract),
``undocumented`` (any other name outside the documented API that
``storefront.internals.DOCUMENTED`` lists) or ``public``. The constructor and ``__call__``
are the class's own interface, and other dunders the language's.

What the walker cannot see: an access through a value whose type neither the code nor a
binding above tells (a value taken out of a dict or a list, a parameter annotated ``Any``,
a lambda's argument). ``tests/test_internals_registry.py`` holds it to known cases.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Our packages, and the test module that patches Connexion for the whole test run.
OUR_PACKAGES = ("core", "persistence", "storefront", "handlers")
OUR_FILES = ("tests/spec_validation.py",)
#: Not walked: the registry names every entry in order to check it; naming is not using.
NOT_WALKED = ("storefront/internals.py",)
#: The libraries whose uses are reported.
LIBRARIES = frozenset(
    {"connexion", "starlette", "uvicorn", "uvloop", "sqlalchemy", "greenlet", "limits", "redis"}
)
#: The other libraries the code reaches, not walked: outside issue 23's list. A run of the
#: walker over them found no private name, and one override, pydantic-settings' documented
#: model_config; their other names are public ones held in private modules.
NOT_WALKED_LIBRARIES = frozenset(
    {
        "alembic",
        "anyio",
        # Its documented API only (the parser and its errors, in its README); the behaviour
        # storefront/server.py relies on is pinned in tests/test_uvicorn_pins.py.
        "httptools",
        "argon2",
        "cryptography",
        "jsonschema",
        "jwt",
        # storefront/access/client_keys.py fetches a client's JWK Set: httpx's documented
        # client API only (get, AsyncClient, Response, its exception classes).
        "httpx",
        # storefront/docsite.py, the docs build: MkDocs' documented API (load_config, build,
        # File.generated, the hook events); Material imported only to tell whether it is
        # installed (the file its search worker is in, which the build reads, is checked by
        # tests/test_docsite.py searching from file://); swagger_ui_bundle's swagger_ui_path,
        # from its README.
        "material",
        "mkdocs",
        "swagger_ui_bundle",
        "prometheus_client",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pythonjsonlogger",
        "rich",
        "yaml",
    }
)

Function = ast.FunctionDef | ast.AsyncFunctionDef


def our_files() -> list[Path]:
    found = [p for package in OUR_PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    found += [ROOT / name for name in OUR_FILES]
    return [p for p in found if str(p.relative_to(ROOT)) not in NOT_WALKED]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_of(obj: Any) -> str | None:
    """The top-level package a module or class comes from; None for ours."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if not isinstance(name, str):
        return None
    top = name.partition(".")[0]
    return None if top in OUR_PACKAGES or top in ("tests", "snippet") else top


def is_stdlib(top: str) -> bool:
    return top in sys.stdlib_module_names or top == "builtins"


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def is_private(name: str) -> bool:
    return name.startswith("_") and not is_dunder(name)


@dataclass(frozen=True)
class Use:
    library: str
    #: What is reached, "module:name" or "module:Class.name", named where it is held.
    path: str
    how: str  # "import", "read", "call", "assign", "delete" or "override"
    kind: str  # "private", "undocumented", "override" or "public"
    where: str  # "file:line"
    #: The module or class that holds the name, and the name.
    holder: Any = field(compare=False, repr=False)
    name: str = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[int, str]:
        """What a registry entry that names this use resolves to."""
        return id(self.holder), self.name

    def __str__(self) -> str:
        return f"{self.where}: {self.path} ({self.kind}, {self.how})"


# What the walker knows an expression to be.
@dataclass(frozen=True)
class Module:
    module: types.ModuleType


@dataclass(frozen=True)
class Static:
    """A class, function or other object itself (calling a class makes an Instance)."""

    obj: Any
    #: For a function read from a class: the class, for the ``Self`` of its return type.
    owner: type | None = None


@dataclass(frozen=True)
class Instance:
    cls: type


@dataclass(frozen=True)
class Super:
    cls: type  # the class whose method calls super()


@dataclass(frozen=True)
class OurFunction:
    """A function of ours known from its source only (nested in another)."""

    node: Function
    scope: Scope


Value = Module | Static | Instance | Super | OurFunction | None


# ---------------------------------------------------------------------------------------------
# Sources: modules, their imports, the classes in them


def _import(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # Alembic's env.py runs only inside Alembic, for one
        return None


@functools.cache
def _parsed(filename: str) -> ast.Module | None:
    try:
        return ast.parse(Path(filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _source_file(module: types.ModuleType | None) -> str | None:
    filename = getattr(module, "__file__", None)
    return filename if isinstance(filename, str) and filename.endswith(".py") else None


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    return importlib.util.resolve_name("." * node.level + (node.module or ""), package)


def _import_bindings(node: ast.AST, package: str) -> dict[str, tuple[str, str | None]]:
    """name -> (module, attribute or None) for each import statement in ``node``."""
    found: dict[str, tuple[str, str | None]] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom):
            base = _absolute(sub, package)
            for alias in sub.names:
                found.setdefault(alias.asname or alias.name, (base, alias.name))
        elif isinstance(sub, ast.Import):
            for alias in sub.names:
                if alias.asname:
                    found.setdefault(alias.asname, (alias.name, None))
                else:
                    top = alias.name.partition(".")[0]
                    found.setdefault(top, (top, None))
    return found


@functools.cache
def _imports_of(module: str) -> dict[str, tuple[str, str | None]]:
    """Every import of a library module's source, those under ``if TYPE_CHECKING:`` too: how
    its annotations name things."""
    mod = sys.modules.get(module) or _import(module)
    filename = _source_file(mod)
    tree = _parsed(filename) if filename else None
    if mod is None or tree is None:
        return {}
    return _import_bindings(tree, _package_of(module, hasattr(mod, "__path__")))


def _resolve_import(module: str, attribute: str | None) -> Value:
    mod = _import(module)
    if mod is None:
        return None
    if attribute is None:
        return Module(mod)
    if hasattr(mod, attribute):
        return as_value(getattr(mod, attribute))
    sub = _import(f"{module}.{attribute}")
    return Module(sub) if sub is not None else None


def as_value(obj: Any) -> Value:
    if isinstance(obj, types.ModuleType):
        return Module(obj)
    if (
        isinstance(obj, type | functools.partial | typing.TypeVar)
        or inspect.isroutine(obj)
        or hasattr(obj, "__wrapped__")
        or typing.get_origin(obj) is not None
        or getattr(type(obj), "__module__", None) == "typing"
    ):
        return Static(obj)
    return Instance(type(obj))


@functools.cache
def _classes_in(filename: str) -> dict[str, ast.ClassDef]:
    """Every class of a source file, by qualified name."""
    tree = _parsed(filename)
    found: dict[str, ast.ClassDef] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                found.setdefault(prefix + child.name, child)
                visit(child, prefix + child.name + ".")
            elif isinstance(child, Function):
                visit(child, prefix + child.name + ".<locals>.")
            else:
                visit(child, prefix)

    if tree is not None:
        visit(tree, "")
    return found


#: Classes of ours built from their source (a snippet's, a class inside a function): their defs.
_BUILT: dict[type, ast.ClassDef] = {}


def class_source(cls: type) -> ast.ClassDef | None:
    if cls in _BUILT:
        return _BUILT[cls]
    filename = _source_file(sys.modules.get(cls.__module__))
    return _classes_in(filename).get(cls.__qualname__) if filename else None


@dataclass(frozen=True)
class Assigned:
    """An instance attribute as a class's source sets it (``self.a: T = v``, or ``a: T`` in
    the class body)."""

    annotation: ast.expr | None
    value: ast.expr | None
    method: Function | None


def _self_targets(statement: ast.AST) -> Iterator[tuple[str, ast.expr | None, ast.expr | None]]:
    """(attribute, annotation, value) for each ``self.attribute`` a statement assigns."""
    targets: list[ast.expr] = []
    annotation = value = None
    if isinstance(statement, ast.Assign):
        targets, value = _flatten(statement.targets), statement.value
        if len(targets) > 1:
            value = None
    elif isinstance(statement, ast.AnnAssign):
        targets, annotation, value = [statement.target], statement.annotation, statement.value
    elif isinstance(statement, ast.AugAssign):
        targets = [statement.target]
    for target in targets:
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            yield target.attr, annotation, value


def _flatten(targets: list[ast.expr]) -> list[ast.expr]:
    out: list[ast.expr] = []
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            out.extend(_flatten(list(target.elts)))
        else:
            out.append(target)
    return out


@functools.cache
def instance_attributes(cls: type) -> dict[str, Assigned]:
    """The instance attributes that a class's own source (not its bases') sets or declares."""
    node = class_source(cls)
    found: dict[str, Assigned] = {}
    if node is None:
        return found
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            found.setdefault(item.target.id, Assigned(item.annotation, item.value, None))
        if isinstance(item, Function):
            for statement in ast.walk(item):
                for name, annotation, value in _self_targets(statement):
                    known = found.get(name)
                    if known is None or (known.annotation is None and annotation is not None):
                        found[name] = Assigned(annotation, value, item)
    return found


@dataclass(frozen=True)
class Found:
    owner: type
    how: str  # "member" (in vars(owner)) or "instance" (set by its source)
    raw: Any


def lookup(mro: typing.Sequence[type], name: str) -> Found | None:
    for klass in mro:
        if klass is object:
            continue
        if name in vars(klass):
            return Found(klass, "member", vars(klass)[name])
        assigned = instance_attributes(klass)
        if name in assigned:
            return Found(klass, "instance", assigned[name])
    return None


def lookup_below(cls: type, name: str) -> Found | None:
    """The attribute on the nearest subclass of ``cls`` that has it."""
    pending = list(type.__subclasses__(cls))
    seen: set[type] = set()
    while pending:
        klass = pending.pop(0)
        if klass in seen:
            continue
        seen.add(klass)
        found = lookup([klass], name)
        if found is not None:
            return found
        pending.extend(type.__subclasses__(klass))
    return None


def is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


# ---------------------------------------------------------------------------------------------
# Annotations in a library's source


def annotation_value(annotation: Any, module: str, self_cls: type | None) -> Value:
    """What an annotation (AST node, string or typing object) in ``module`` says a value is."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        try:
            annotation = ast.parse(annotation, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.expr):
        return _annotation_node(annotation, module, self_cls)
    return _annotation_object(annotation, self_cls)


def _annotation_object(annotation: Any, self_cls: type | None) -> Value:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for arg in arguments:
            found = _annotation_object(arg, self_cls) if arg is not type(None) else None
            if found is not None:
                return found
        return None
    if origin is typing.Annotated:
        return _annotation_object(arguments[0], self_cls)
    if origin is type:
        return Static(arguments[0]) if arguments and isinstance(arguments[0], type) else None
    if isinstance(origin, type):
        return Instance(origin)
    if annotation is typing.Self:
        return Instance(self_cls) if self_cls is not None else None
    is_class = isinstance(annotation, type) and annotation is not typing.Any
    return Instance(annotation) if is_class else None


def _annotation_node(node: ast.expr, module: str, self_cls: type | None) -> Value:
    if isinstance(node, ast.Constant):
        return (
            annotation_value(node.value, module, self_cls) if isinstance(node.value, str) else None
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_node(node.left, module, self_cls) or _annotation_node(
            node.right, module, self_cls
        )
    if isinstance(node, ast.Subscript):
        outer = _global(node.value, module)
        base = outer.obj if isinstance(outer, Static) else None
        arguments = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base in (typing.Optional, typing.Union, typing.Annotated):
            for arg in arguments:
                found = _annotation_node(arg, module, self_cls)
                if found is not None:
                    return found
            return None
        if base in _TYPE_OF:
            inner = _annotation_node(arguments[0], module, self_cls)
            return Static(inner.cls) if isinstance(inner, Instance) else None
        return _annotation_node(node.value, module, self_cls)
    target = _global(node, module)
    if isinstance(target, Static):
        if target.obj is typing.Self:
            return Instance(self_cls) if self_cls is not None else None
        if isinstance(target.obj, type) and target.obj is not typing.Any:
            return Instance(target.obj)
    return None


def _global(node: ast.expr, module: str) -> Value:
    """A (dotted) name as a library module's globals, or its imports, give it."""
    if isinstance(node, ast.Attribute):
        outer = _global(node.value, module)
        if isinstance(outer, Module | Static):
            holder = outer.module if isinstance(outer, Module) else outer.obj
            found = getattr(holder, node.attr, None)
            return as_value(found) if found is not None else None
        return None
    if not isinstance(node, ast.Name):
        return None
    mod = sys.modules.get(module) or _import(module)
    if mod is not None and node.id in vars(mod):
        return as_value(vars(mod)[node.id])
    binding = _imports_of(module).get(node.id)
    if binding is not None:
        return _resolve_import(*binding)
    return as_value(getattr(builtins, node.id)) if hasattr(builtins, node.id) else None


def returns(obj: Any, self_cls: type | None = None) -> Value:
    """What calling a library's ``obj`` gives, from its return annotation."""
    if isinstance(obj, type):
        return Instance(obj)
    function = obj
    if isinstance(function, staticmethod | classmethod):
        function = function.__func__
    if isinstance(function, property):
        function = function.fget
    if isinstance(function, functools.cached_property):
        function = function.func
    try:
        signature = inspect.signature(function, eval_str=False)
    except (TypeError, ValueError):
        return None
    module = getattr(inspect.unwrap(function), "__module__", None) or ""
    return annotation_value(signature.return_annotation, module, self_cls)


def library_member(found: Found, receiver: type) -> Value:
    """The value of a library's attribute, read on an instance of ``receiver``."""
    raw, module = found.raw, found.owner.__module__
    if found.how == "instance":
        value = annotation_value(raw.annotation, module, receiver)
        if value is None and raw.value is not None:
            value = _library_assigned(raw.value, raw.method, module, receiver)
        return value
    if isinstance(raw, property | functools.cached_property):
        return returns(raw, receiver)
    if isinstance(raw, staticmethod | classmethod):
        return Static(raw.__func__, owner=receiver)
    if inspect.isroutine(raw):
        return Static(raw, owner=receiver)
    if inspect.isdatadescriptor(raw):
        return None
    return as_value(raw)


def _library_assigned(
    node: ast.expr, method: Function | None, module: str, self_cls: type
) -> Value:
    """What a library's ``self.a = v`` sets: a parameter of the method, by its annotation; or
    an instance of a class the module names."""
    if isinstance(node, ast.Name) and method is not None:
        for arg in (*method.args.posonlyargs, *method.args.args, *method.args.kwonlyargs):
            if arg.arg == node.id:
                return annotation_value(arg.annotation, module, self_cls)
    if isinstance(node, ast.Call):
        called = _global(node.func, module)
        if isinstance(called, Static) and isinstance(called.obj, type):
            return Instance(called.obj)
    return None


# ---------------------------------------------------------------------------------------------
# Our code


@dataclass
class Context:
    """One module of ours."""

    path: Path
    module: str
    tree: ast.Module
    runtime: types.ModuleType | None

    @property
    def package(self) -> str:
        return _package_of(self.module, self.path.name == "__init__.py")

    def where(self, node: ast.AST) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{getattr(node, 'lineno', 0)}"


@dataclass(eq=False)
class Scope:
    context: Context
    parent: Scope | None
    #: The class of a method's ``self`` and ``super()``.
    cls: type | None = None
    #: A class body's scope, which its methods do not see.
    is_class: bool = False
    #: name -> (how it is bound, what to), in source order.
    bindings: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    def bind(self, name: str, how: str, what: Any) -> None:
        self.bindings.setdefault(name, []).append((how, what))


class Walker:
    def __init__(self) -> None:
        self.uses: list[Use] = []
        self.seen: set[tuple[str, str, str]] = set()
        #: Each third-party package reached, and where first.
        self.libraries: dict[str, str] = {}
        self.classes: dict[int, type | None] = {}  # id(ClassDef) -> its class
        self.class_nodes: dict[type, tuple[ast.ClassDef, Scope]] = {}  # class -> (def, body)
        self.method_scopes: dict[int, Scope] = {}
        self.values: dict[int, Value] = {}
        self.resolving: set[int] = set()
        self.calls: set[int] = set()  # ids of the Attribute nodes that are called

    def load(self, path: Path, source: str | None = None, module: str | None = None) -> Context:
        tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
        name = module or module_name(path)
        runtime = _import(name) if source is None else None
        return Context(path, name, tree, runtime)

    def prepare(self, context: Context) -> Scope:
        """The module's scope, with its classes (and theirs) known before any is walked: a
        class of another module may be met first as the type of an attribute."""
        scope = Scope(context, None)
        self._bind_block(scope, context.tree.body)
        pending = [(scope, n) for n in context.tree.body if isinstance(n, ast.ClassDef)]
        while pending:
            outer, node = pending.pop()
            cls = self.our_class(outer, node)
            if cls is None:
                continue
            body = Scope(context, outer, cls=cls, is_class=True)
            self._bind_block(body, node.body)
            self.class_nodes.setdefault(cls, (node, body))
            pending.extend((body, n) for n in node.body if isinstance(n, ast.ClassDef))
        return scope

    def walk(self, scope: Scope) -> None:
        for statement in scope.context.tree.body:
            self._visit(scope, statement)

    # Bindings ----------------------------------------------------------------------------
    def _bind_block(self, scope: Scope, body: list[ast.stmt]) -> None:
        for statement in body:
            for node in _binding_nodes(statement):
                self._bind(scope, node)

    def _bind(self, scope: Scope, node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name, target in _import_bindings(node, scope.context.package).items():
                scope.bind(name, "import", target)
        elif isinstance(node, Function):
            scope.bind(node.name, "function", node)
        elif isinstance(node, ast.ClassDef):
            scope.bind(node.name, "class", node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    scope.bind(target.id, "expr", node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            scope.bind(node.target.id, "annotation", node.annotation)
            if node.value is not None:
                scope.bind(node.target.id, "expr", node.value)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            scope.bind(node.target.id, "expr", node.value)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name):
                    scope.bind(item.optional_vars.id, "expr", item.context_expr)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for target in _flatten([node.target]):
                if isinstance(target, ast.Name):
                    scope.bind(target.id, "unknown", None)

    def _function_scope(self, scope: Scope, node: Function | ast.Lambda, cls: type | None) -> Scope:
        outer = scope
        while outer.is_class and outer.parent is not None:
            outer = outer.parent  # a class body is not visible from its methods
        inner = Scope(scope.context, outer, cls=cls or scope.cls)
        positional = [*node.args.posonlyargs, *node.args.args]
        decorators = [] if isinstance(node, ast.Lambda) else [_name(d) for d in node.decorator_list]
        for index, arg in enumerate([*positional, *node.args.kwonlyargs]):
            if index == 0 and cls is not None and "staticmethod" not in decorators:
                inner.bind(arg.arg, "cls" if "classmethod" in decorators else "self", cls)
            elif arg.annotation is not None:
                inner.bind(arg.arg, "annotation", arg.annotation)
            else:
                inner.bind(arg.arg, "unknown", None)
        for arg in (node.args.vararg, node.args.kwarg):
            if arg is not None:
                inner.bind(arg.arg, "unknown", None)
        if isinstance(node, ast.Lambda):
            for sub in ast.walk(node.body):
                self._bind(inner, sub)
        else:
            self._bind_block(inner, node.body)
        return inner

    # Visiting ----------------------------------------------------------------------------
    def _visit(self, scope: Scope, node: ast.AST) -> None:
        if isinstance(node, Function | ast.Lambda):
            self._visit_function(scope, node)
        elif isinstance(node, ast.ClassDef):
            self._visit_class(scope, node)
        elif isinstance(node, ast.If | ast.IfExp) and _narrowed(node.test):
            self._visit(scope, node.test)
            inner = self._narrow(scope, node.test)
            for statement in node.body if isinstance(node.body, list) else [node.body]:
                self._visit(inner, statement)
            for statement in node.orelse if isinstance(node.orelse, list) else [node.orelse]:
                self._visit(scope, statement)
        elif isinstance(node, ast.Assert) and _narrowed(node.test):
            self._visit(scope, node.test)
            for name, kind in _narrowed(node.test):
                scope.bindings.setdefault(name, []).insert(0, ("narrowed", kind))
        elif isinstance(node, ast.ExceptHandler):
            if node.type is not None:
                self._visit(scope, node.type)
            inner = Scope(scope.context, scope, cls=scope.cls)
            if node.name and node.type is not None:
                inner.bind(node.name, "caught", node.type)
            self._bind_block(inner, node.body)
            for statement in node.body:
                self._visit(inner, statement)
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner = Scope(scope.context, scope, cls=scope.cls)
            for generator in node.generators:
                self._bind(inner, generator)
            for index, generator in enumerate(node.generators):
                self._visit(scope if index == 0 else inner, generator.iter)
                for condition in generator.ifs:
                    self._visit(inner, condition)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                self._visit(inner, part)
        else:
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._visit_import(scope, node)
            elif isinstance(node, ast.Attribute):
                self._visit_attribute(scope, node)
            elif isinstance(node, ast.Call):
                self._visit_call(scope, node)
            elif isinstance(node, ast.AnnAssign):
                self._visit_annotation(scope, node.annotation)
                for child in (node.target, node.value):
                    if child is not None:
                        self._visit(scope, child)
                return
            for child in ast.iter_child_nodes(node):
                self._visit(scope, child)

    def _narrow(self, scope: Scope, test: ast.expr) -> Scope:
        """A scope in which the names that ``test`` checks with isinstance() are of that class."""
        inner = Scope(scope.context, scope, cls=scope.cls)
        for name, kind in _narrowed(test):
            inner.bind(name, "narrowed", kind)
        return inner

    def _visit_function(self, scope: Scope, node: Function | ast.Lambda) -> None:
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self._visit(scope, default)
        cls = scope.cls if scope.is_class else None
        if isinstance(node, ast.Lambda):
            inner = self._function_scope(scope, node, None)
            self._visit(inner, node.body)
            return
        for decorator in node.decorator_list:
            self._visit(scope, decorator)
        arguments = node.args
        for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
            self._visit_annotation(scope, arg.annotation)
        self._visit_annotation(scope, node.returns)
        inner = self._function_scope(scope, node, cls)
        if cls is not None:
            self.method_scopes[id(node)] = inner
        for statement in node.body:
            self._visit(inner, statement)

    def _visit_annotation(self, scope: Scope, node: ast.expr | None) -> None:
        if node is None:
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                parsed = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return
            for sub in ast.walk(parsed):
                ast.copy_location(sub, node)
            node = parsed
        self._visit(scope, node)

    def _visit_class(self, scope: Scope, node: ast.ClassDef) -> None:
        for child in (*node.bases, *node.keywords, *node.decorator_list):
            self._visit(scope, child)
        cls = self.our_class(scope, node)
        if cls is not None and cls in self.class_nodes and self.class_nodes[cls][0] is node:
            body = self.class_nodes[cls][1]
        else:
            body = Scope(scope.context, scope, cls=cls, is_class=True)
            self._bind_block(body, node.body)
            if cls is not None:
                self.class_nodes[cls] = (node, body)
        for statement in node.body:
            self._visit(body, statement)
        if cls is not None:
            self._overrides(scope.context, cls)

    def our_class(self, scope: Scope, node: ast.ClassDef) -> type | None:
        """The class a ClassDef of ours makes: its module's, or one built from its bases."""
        if id(node) in self.classes:
            return self.classes[id(node)]
        cls = None
        runtime = scope.context.runtime
        if runtime is not None and scope.parent is None:
            found = vars(runtime).get(node.name)
            cls = found if isinstance(found, type) else None
        if cls is None:
            bases = [self.value(scope, base) for base in node.bases]
            classes = [b.obj for b in bases if isinstance(b, Static) and isinstance(b.obj, type)]
            # Its body's names, so that lookups find them here rather than on a base.
            namespace = {name: _Placeholder for name, _, how in _defined(node) if how == "define"}
            try:
                cls = types.new_class(
                    node.name, tuple(classes), {}, lambda ns: ns.update(namespace)
                )
                cls.__module__ = scope.context.module
                cls.__qualname__ = node.name
                _BUILT[cls] = node
            except TypeError:
                cls = None
        self.classes[id(node)] = cls
        return cls

    def _visit_import(self, scope: Scope, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.ImportFrom):
            module = _import(_absolute(node, scope.context.package))
            for alias in node.names:
                if module is not None:
                    self.record(scope, node, module, alias.name, "import")
            return
        for alias in node.names:
            parts = alias.name.split(".")
            top = _import(parts[0])
            if top is not None:
                self.note_library(top, scope, node)
            for depth in range(1, len(parts)):
                parent = _import(".".join(parts[:depth]))
                if parent is not None:
                    self.record(scope, node, parent, parts[depth], "import")

    def _visit_attribute(self, scope: Scope, node: ast.Attribute) -> None:
        how = {ast.Store: "assign", ast.Del: "delete"}.get(type(node.ctx), "read")
        if id(node) in self.calls:
            how = "call"
        self.reach(scope, node, self.value(scope, node.value), node.attr, how)

    def _visit_call(self, scope: Scope, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute):
            self.calls.add(id(node.func))
        literal = _literal(node.args[1]) if len(node.args) >= 2 else None
        called = node.func.id if isinstance(node.func, ast.Name) else None
        if called in ("getattr", "hasattr", "setattr", "delattr") and literal is not None:
            how = {"setattr": "assign", "delattr": "delete"}.get(called, "read")
            self.reach(scope, node, self.value(scope, node.args[0]), literal, how)
        # vars(x).get("a"), x.__dict__.get("a")
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            holder = _namespace_of(node.func.value)
            name = _literal(node.args[0])
            if holder is not None and name is not None:
                self.reach(scope, node, self.value(scope, holder), name, "read")

    # Uses --------------------------------------------------------------------------------
    def note_library(self, obj: Any, scope: Scope, node: ast.AST) -> str | None:
        top = library_of(obj)
        if top is None or is_stdlib(top):
            return None
        self.libraries.setdefault(top, scope.context.where(node))
        return top if top in LIBRARIES else None

    def record(
        self,
        scope: Scope,
        node: ast.AST,
        holder: Any,
        name: str,
        how: str,
        receiver: type | None = None,
        kind: str | None = None,
    ) -> None:
        library = self.note_library(holder, scope, node)
        if library is None or isinstance(getattr(holder, name, None), types.ModuleType):
            return  # a module of theirs: the names used from it are reached one by one
        if isinstance(holder, types.ModuleType):
            path = f"{holder.__name__}:{name}"
        else:
            path = f"{holder.__module__}:{holder.__qualname__}.{name}"
        where = scope.context.where(node)
        if (path, how, where) in self.seen:
            return
        self.seen.add((path, how, where))
        kind = kind or classify(holder, name, receiver)
        self.uses.append(Use(library, path, how, kind, where, holder, name))

    def reach(self, scope: Scope, node: ast.AST, receiver: Value, name: str, how: str) -> None:
        if receiver is None or is_dunder(name):
            return
        if isinstance(receiver, Module):
            module = receiver.module
            if hasattr(module, name) or _import(f"{module.__name__}.{name}") is not None:
                self.record(scope, node, module, name, how)
            return
        if isinstance(receiver, Static):
            if isinstance(receiver.obj, type):
                found = lookup(receiver.obj.__mro__, name)
                if found is not None:
                    self.record(scope, node, found.owner, name, how, receiver.obj)
            return
        if isinstance(receiver, Instance | Super):
            cls = receiver.cls
            mro = _mro_of(receiver)
            found = lookup(mro, name)
            if found is None and library_of(cls) in LIBRARIES and not is_protocol(cls):
                found = lookup_below(cls, name) or Found(cls, "instance", None)
            if found is not None and not is_protocol(found.owner):
                self.record(scope, node, found.owner, name, how, cls)

    def _overrides(self, context: Context, cls: type) -> None:
        """Names that the classes of ours in ``cls``'s MRO define or assign and a class of
        theirs later in it has too."""
        mro = cls.__mro__
        for index, ours in enumerate(mro):
            if ours not in self.class_nodes:
                continue
            theirs = [k for k in mro[index + 1 :] if library_of(k) in LIBRARIES]
            if not theirs:
                continue
            node, body = self.class_nodes[ours]
            scope = Scope(body.context, None)
            for name, item, how in _defined(node):
                if name in ("__init__", "__call__") or (is_dunder(name) and how != "assign"):
                    continue
                found = lookup(theirs, name)
                if found is None or is_protocol(found.owner):
                    continue
                if how == "assign":
                    self.record(scope, item, found.owner, name, "assign", cls)
                elif getattr(found.raw, "__isabstractmethod__", False):
                    continue  # implemented: the class asks for it
                else:
                    kind = "private" if is_private(name) else classify_override(found.owner, name)
                    self.record(scope, item, found.owner, name, "override", cls, kind)

    # Values ------------------------------------------------------------------------------
    def value(self, scope: Scope, node: ast.expr) -> Value:
        key = id(node)
        if key in self.values:
            return self.values[key]
        if key in self.resolving:
            return None
        self.resolving.add(key)
        try:
            found = self._value(scope, node)
        finally:
            self.resolving.discard(key)
        self.values[key] = found
        return found

    def _value(self, scope: Scope, node: ast.expr) -> Value:
        if isinstance(node, ast.Name):
            return self.name(scope, node.id)
        if isinstance(node, ast.Attribute):
            return self.attribute(self.value(scope, node.value), node.attr)
        if isinstance(node, ast.Call):
            return self.call(scope, node)
        if isinstance(node, ast.Await | ast.NamedExpr):
            return self.value(scope, node.value)
        if isinstance(node, ast.BoolOp):
            for operand in node.values:
                found = self.value(scope, operand)
                if found is not None:
                    return found
            return None
        if isinstance(node, ast.IfExp):
            body = self._narrow(scope, node.test) if _narrowed(node.test) else scope
            return self.value(body, node.body) or self.value(scope, node.orelse)
        return None

    def name(self, scope: Scope | None, name: str) -> Value:
        while scope is not None:
            if name in scope.bindings:
                return self._binding(scope, name)
            scope = scope.parent
        return as_value(getattr(builtins, name)) if hasattr(builtins, name) else None

    def _binding(self, scope: Scope, name: str) -> Value:
        bindings = scope.bindings[name]
        for how, what in bindings:  # an isinstance() check, else an annotation, says what it is
            if how == "narrowed":
                found = self.value(scope, what)
                if isinstance(found, Static) and isinstance(found.obj, type):
                    return Instance(found.obj)
        for how, what in bindings:
            if how == "annotation":
                found = self.annotation(scope, what)
                if found is not None:
                    return found
        for how, what in bindings:  # else the first assignment that tells
            found = self._bound(scope, name, how, what)
            if found is not None:
                return found
        return None

    def _bound(self, scope: Scope, name: str, how: str, what: Any) -> Value:
        if how == "import":
            return _resolve_import(*what)
        if how == "self":
            return Instance(what)
        if how == "cls":
            return Static(what)
        if how == "expr":
            return self.value(scope, what)
        if how == "caught":
            found = self.value(scope, what)
            is_class = isinstance(found, Static) and isinstance(found.obj, type)
            return Instance(found.obj) if is_class else None
        if how == "class":
            cls = self.our_class(scope, what)
            return Static(cls) if cls is not None else None
        if how == "function":
            runtime = scope.context.runtime
            if scope.parent is None and runtime is not None and name in vars(runtime):
                return as_value(vars(runtime)[name])
            return OurFunction(what, scope)
        return None

    def annotation(self, scope: Scope, node: ast.expr) -> Value:
        """An annotation of ours, read with the names of the scope it is written in."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.annotation(scope, node.left) or self.annotation(scope, node.right)
        if isinstance(node, ast.Subscript):
            outer = self.value(scope, node.value)
            base = outer.obj if isinstance(outer, Static) else None
            arguments = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base in (typing.Optional, typing.Union, typing.Annotated):
                for arg in arguments:
                    found = self.annotation(scope, arg)
                    if found is not None:
                        return found
                return None
            if base in _TYPE_OF:
                inner = self.annotation(scope, arguments[0])
                return Static(inner.cls) if isinstance(inner, Instance) else None
            if _holds_value(base):
                return self.annotation(scope, arguments[0])
            return self.annotation(scope, node.value)
        target = self.value(scope, node)
        if isinstance(target, Static):
            if target.obj is typing.Self:
                return Instance(scope.cls) if scope.cls is not None else None
            if isinstance(target.obj, type) and target.obj is not typing.Any:
                return Instance(target.obj)
        return None

    def attribute(self, receiver: Value, name: str) -> Value:
        if isinstance(receiver, Module):
            if hasattr(receiver.module, name):
                return as_value(getattr(receiver.module, name))
            sub = _import(f"{receiver.module.__name__}.{name}")
            return Module(sub) if sub is not None else None
        if isinstance(receiver, Static):
            if not isinstance(receiver.obj, type):
                return None
            found = lookup(receiver.obj.__mro__, name)
            if found is None or found.how != "member" or isinstance(found.raw, property):
                return None
            if isinstance(found.raw, staticmethod | classmethod):
                return Static(found.raw.__func__, owner=receiver.obj)
            if inspect.isfunction(found.raw):
                return Static(found.raw, owner=receiver.obj)
            return as_value(getattr(receiver.obj, name, None))
        if isinstance(receiver, Instance | Super):
            cls = receiver.cls
            found = lookup(_mro_of(receiver), name)
            if found is None and library_of(cls) in LIBRARIES:
                found = lookup_below(cls, name)
            if found is None:
                return None
            if found.owner in self.class_nodes:
                return self._our_member(found, cls)
            return library_member(found, cls)
        return None

    def _our_member(self, found: Found, receiver: type) -> Value:
        """An attribute of a class of ours: its annotation, or what it is set to."""
        node, body = self.class_nodes[found.owner]
        if found.how == "member":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and _is_name(item.target, _name_of(found)):
                    return self.annotation(body, item.annotation)
            raw = found.raw
            function = getattr(raw, "fget", None) or getattr(raw, "func", None) or raw
            name = getattr(function, "__name__", None)
            for item in node.body:
                if isinstance(item, Function) and item.name == name:
                    if isinstance(raw, property | functools.cached_property):
                        return self._returns(item, self._method_scope(found.owner, item, body))
                    return Static(raw, owner=receiver)
            return as_value(raw)
        name = next((n for n, a in instance_attributes(found.owner).items() if a is found.raw), "")
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and _is_name(item.target, name):
                return self.annotation(body, item.annotation)
        candidates: list[tuple[Function, ast.expr, bool]] = []
        for item in node.body:
            if isinstance(item, Function):
                for statement in ast.walk(item):
                    for attribute, annotation, value in _self_targets(statement):
                        if attribute == name and annotation is not None:
                            candidates.insert(0, (item, annotation, True))
                        elif attribute == name and value is not None:
                            candidates.append((item, value, False))
        for method, expr, is_annotation in candidates:
            scope = self._method_scope(found.owner, method, body)
            found_value = self.annotation(scope, expr) if is_annotation else self.value(scope, expr)
            if found_value is not None:
                return found_value
        return None

    def _method_scope(self, owner: type, method: Function, body: Scope) -> Scope:
        if id(method) not in self.method_scopes:
            self.method_scopes[id(method)] = self._function_scope(body, method, owner)
        return self.method_scopes[id(method)]

    def _returns(self, function: Function, scope: Scope) -> Value:
        return self.annotation(scope, function.returns) if function.returns is not None else None

    def call(self, scope: Scope, node: ast.Call) -> Value:
        if isinstance(node.func, ast.Name) and node.func.id == "super" and not node.args:
            return Super(scope.cls) if scope.cls is not None else None
        if isinstance(node.func, ast.Name) and node.func.id == "cast" and len(node.args) == 2:
            return self.annotation(scope, node.args[0])
        called = self.value(scope, node.func)
        if isinstance(called, Static):
            if isinstance(called.obj, type):
                return Instance(called.obj)
            return returns(called.obj, called.owner)
        if isinstance(called, OurFunction):
            return self._returns(called.node, called.scope)
        return None


def _Placeholder() -> None:
    """Stands for a name that a class built from its source defines."""


#: type[X], and typing.Type[X] as libraries still write it.
_TYPE_OF = (type, typing.Type)  # noqa: UP006


def _holds_value(generic: Any) -> bool:
    """SQLAlchemy's ``Mapped[X]``: on an instance, the attribute is an X."""
    return (
        isinstance(generic, type)
        and generic.__name__ == "Mapped"
        and library_of(generic) == "sqlalchemy"
    )


def _name_of(found: Found) -> str:
    """The name a member was found under."""
    for name, value in vars(found.owner).items():
        if value is found.raw:
            return name
    return ""


def _mro_of(receiver: Instance | Super) -> tuple[type, ...]:
    mro = receiver.cls.__mro__
    return mro if isinstance(receiver, Instance) else mro[mro.index(receiver.cls) + 1 :]


def _defined(node: ast.ClassDef) -> Iterator[tuple[str, ast.AST, str]]:
    """(name, where, "define" or "assign") for what a class body defines and its methods
    assign on ``self``."""
    defined = set()
    for item in node.body:
        names: list[str] = []
        if isinstance(item, Function | ast.ClassDef):
            names = [item.name]
        elif isinstance(item, ast.Assign):
            names = [t.id for t in _flatten(item.targets) if isinstance(t, ast.Name)]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names = [item.target.id]
        for name in names:
            if name not in defined:
                defined.add(name)
                yield name, item, "define"
    for item in node.body:
        if isinstance(item, Function):
            for statement in ast.walk(item):
                for name, _, _ in _self_targets(statement):
                    if name not in defined:
                        defined.add(name)
                        yield name, statement, "assign"


def _binding_nodes(statement: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of a statement that bind names in its block (not in nested functions,
    classes, lambdas or comprehensions, which have scopes of their own)."""
    pending: list[ast.AST] = [statement]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, _OWN_SCOPES) and (
            node is not statement or not isinstance(node, ast.stmt)
        ):
            continue
        if isinstance(node, Function | ast.ClassDef):
            continue
        pending.extend(reversed(list(ast.iter_child_nodes(node))))


#: Nodes whose names are bound in a scope of their own (an except clause's name: its body's).
_OWN_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.GeneratorExp,
    ast.DictComp,
    ast.ExceptHandler,
)


def _narrowed(test: ast.expr) -> list[tuple[str, ast.expr]]:
    """(name, class) for each ``isinstance(name, class)`` that ``test`` requires."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [found for value in test.values for found in _narrowed(value)]
    if (
        isinstance(test, ast.Call)
        and _is_name(test.func, "isinstance")
        and len(test.args) == 2
        and isinstance(test.args[0], ast.Name)
        and not isinstance(test.args[1], ast.Tuple)
    ):
        return [(test.args[0].id, test.args[1])]
    return []


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def _namespace_of(node: ast.expr) -> ast.expr | None:
    """``x`` of ``vars(x)`` or ``x.__dict__``."""
    if isinstance(node, ast.Call) and _is_name(node.func, "vars") and len(node.args) == 1:
        return node.args[0]
    if isinstance(node, ast.Attribute) and node.attr == "__dict__":
        return node.value
    return None


# ---------------------------------------------------------------------------------------------
# Against the documented API


def classify(holder: Any, name: str, receiver: type | None) -> str:
    from storefront import internals

    if is_private(name):
        return "private"
    return "public" if internals.is_documented(holder, name, receiver) else "undocumented"


def classify_override(holder: type, name: str) -> str:
    from storefront import internals

    return "public" if internals.documented_hooks(holder, name) else "override"


@dataclass
class Report:
    uses: list[Use]
    #: Third-party packages reached, each with where it was first reached.
    libraries: dict[str, str]


def find_uses(files: list[Path] | None = None) -> Report:
    walker = Walker()
    scopes = [walker.prepare(walker.load(path)) for path in files or our_files()]
    for scope in scopes:
        walker.walk(scope)
    return Report(walker.uses, walker.libraries)


def uses_in(source: str) -> list[Use]:
    """The uses in a snippet of code (the walker's own tests)."""
    walker = Walker()
    text = inspect.cleandoc(source)
    walker.walk(walker.prepare(walker.load(ROOT / "snippet.py", source=text, module="snippet")))
    return walker.uses
