"""The layers import one way (docs/design.md, "Layers"): every import of a graphgrad module —
at the top of a file or inside a function — goes to the module's own layer or one above it.
Read from the source with ast, so a new back-import fails here instead of creeping in."""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "graphgrad"

#: top to bottom; a module may import its own layer and the layers above it. A package
#: (ops, compiler, datasets) is one entry: its submodules share its layer.
LAYERS = [
    ("foundation", {"errors", "dtypes", "files", "_core", "machine", "_build_ffi"}),
    ("graph", {"graph", "ops"}),
    ("model", {"autodiff", "optim", "schedules", "nn", "init"}),
    ("compiler", {"compiler"}),
    ("runtime", {"runtime"}),
    ("training", {"train", "checkpoint", "gradcheck", "datasets", "onnx", "landscape", "lr_finder", "callbacks",
                  "distributed"}),
    ("drawing", {"viz", "summary", "plots"}),
    ("application", {"cli", "__main__", "demo", "__init__"}),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}

#: the only upward imports: Program's public drawing entry points call the formatter lazily
#: (importer, function it happens in, imported top-level module)
ALLOWED_UPWARD = {
    ("runtime", "summary", "summary"), ("runtime", "plan_json", "summary"),
    ("runtime", "render", "summary"), ("runtime", "render", "viz"),
    # the learning tools' results draw themselves: GradientStats.plot, LRFinderResult.plot
    ("callbacks", "plot", "plots"), ("lr_finder", "plot", "plots"),
}


def module_files() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "data" not in p.relative_to(PACKAGE).parts[:-1])


def layer_key(path: pathlib.Path) -> str:
    """The LAYERS entry of a file: its top-level module or package under graphgrad/."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def graphgrad_imports(path: pathlib.Path):
    """(top-level graphgrad module imported, enclosing function name or None, line) for every
    import statement in the file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ["graphgrad"] + list(path.relative_to(PACKAGE).parent.parts)
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "graphgrad" and len(parts) > 1:
                        found.append((parts[1], name, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - (child.level - 1)]
                    module = base + (child.module.split(".") if child.module else [])
                else:
                    module = child.module.split(".")
                if module[0] != "graphgrad":
                    continue
                if len(module) > 1:
                    found.append((module[1], name, child.lineno))
                else:                      # from graphgrad import x / from . import x (at the top)
                    found.extend((alias.name, name, child.lineno) for alias in child.names)
            visit(child, name)

    visit(tree, None)
    return found


def test_every_module_has_a_layer():
    unplaced = sorted({layer_key(p) for p in module_files()} - set(RANK))
    assert not unplaced, f"place these modules in LAYERS (and in docs/design.md's layer list): {unplaced}"


@pytest.mark.parametrize("path", module_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_to_the_same_layer_or_above(path):
    importer = layer_key(path)
    upward = []
    for imported, function, line in graphgrad_imports(path):
        if imported not in RANK:
            continue           # a name from a package's __init__ (e.g. `from . import lib`), checked by its file
        if RANK[imported] > RANK[importer] and (importer, function, imported) not in ALLOWED_UPWARD:
            upward.append(f"line {line}: {importer} ({LAYERS[RANK[importer]][0]}) imports {imported} "
                          f"({LAYERS[RANK[imported]][0]})" + (f" in {function}()" if function else ""))
    assert not upward, "\n".join(upward)


def test_the_checker_sees_nested_and_relative_imports():
    # the parser itself: a lazy relative import inside a function is found and resolved
    sample = PACKAGE / "compiler" / "passes.py"
    imports = {m for m, _, _ in graphgrad_imports(sample)}
    assert {"graph", "ops"} <= imports and "runtime" not in imports
    nested = {(m, f) for m, f, _ in graphgrad_imports(PACKAGE / "runtime.py")}
    assert ("summary", "summary") in nested and ("compiler", None) in nested


def test_graph_and_compiler_import_no_drawing_or_runtime_code():
    for path in module_files():
        if layer_key(path) in ("graph", "ops", "compiler"):
            imported = {m for m, _, _ in graphgrad_imports(path)}
            assert not imported & {"viz", "summary", "runtime", "train"}, path


def test_train_uses_only_programs_public_methods():
    """train.py drives compiled programs through Program's public methods (run_steps, __call__,
    plan): no C structures of its own and no reaching into a Program's internals."""
    tree = ast.parse((PACKAGE / "train.py").read_text())
    internals = {"_lock", "_last", "_raise_status", "_executables", "c_buffers", "c_prog", "c_instrs",
                 "feed_slots", "last_feeds", "executable", "views"}
    touched = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & internals)
    assert not touched, touched
    assert "_core" not in {m for m, _, _ in graphgrad_imports(PACKAGE / "train.py")}
    assert "gg_steps" not in (PACKAGE / "train.py").read_text()
