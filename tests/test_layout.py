"""The package's shape: layers that only import downwards, no import cycles, small modules and
functions, thin top-level scripts and console scripts that live inside the package."""

from __future__ import annotations

import ast
import configparser
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_ganaug"
# The pipeline, lowest layer first: a module may import its own layer and the ones before it.
# Infrastructure first (errors, the CLIs' shared helpers, atomic writes, checkpoints, precision,
# figures), then the stages in the order data flows: images -> GANs -> synthesis -> metrics ->
# classifier -> generator quality -> study -> the demo job that runs them all.
LAYERS = (
    ("keras_ganaug", "keras_ganaug.errors", "keras_ganaug.cli_helpers", "keras_ganaug.io",
     "keras_ganaug.checkpoints", "keras_ganaug.runtime", "keras_ganaug.plots"),
    ("keras_ganaug.data",),
    ("keras_ganaug.gans",),
    ("keras_ganaug.synthesize",),
    ("keras_ganaug.metrics",),
    ("keras_ganaug.classify",),
    ("keras_ganaug.metrics.generator",),  # judging one export: a CLI, above the metrics it uses
    ("keras_ganaug.study",),
    ("keras_ganaug.demo_job",),
)
MAX_MODULE_LINES = 400
MAX_SCRIPT_LINES = 80


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an imported dotted name refers to (None: outside the package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, modules: dict[str, Path], name: str | None = None) -> set[str]:
    """Every package module `path` (module `name`) imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import (the layout test reads absolute ones)"
            # `from pkg import sub` imports the submodule sub when there is one, else pkg itself.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(m for m in (resolve(n, modules) for n in names) if m)
    found.discard(name or module_name(path))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def layer(module: str) -> int:
    """The rank of the longest prefix in LAYERS that names `module` or a package holding it."""
    ranks = {prefix: rank for rank, prefixes in enumerate(LAYERS) for prefix in prefixes}
    # "keras_ganaug" is the package's __init__ only, not a prefix of every module.
    matching = [prefix for prefix in ranks if module == prefix
                or (prefix != "keras_ganaug" and module.startswith(prefix + "."))]
    assert matching, f"{module}: in no layer of LAYERS; add it where it belongs"
    return ranks[max(matching, key=len)]


def cli_modules(modules: dict[str, Path]) -> set[str]:
    """The command lines: modules with a top-level main()."""
    return {name for name, path in modules.items()
            if any(isinstance(node, ast.FunctionDef) and node.name == "main"
                   for node in ast.parse(path.read_text()).body)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_reader_sees_imports_inside_functions_and_submodules(tmp_path):
    modules = {"keras_ganaug": Path(), "keras_ganaug.gans": Path(),
               "keras_ganaug.gans.export": Path(), "keras_ganaug.errors": Path()}
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom keras_ganaug.errors import UserError\n"
                      "def f():\n    from keras_ganaug.gans import export, DCGAN\n")
    assert imports_of(source, modules, "m") == {"keras_ganaug.errors", "keras_ganaug.gans.export",
                                           "keras_ganaug.gans"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_higher_layer():
    upward = [f"{importer} (layer {layer(importer)}) imports {imported} (layer {layer(imported)})"
              for importer, targets in import_graph().items() for imported in sorted(targets)
              if layer(imported) > layer(importer)]
    assert upward == []


def test_no_library_module_imports_a_command_line():
    """What a CLI module holds that others need belongs in a library module below it; only a
    package's __main__ runs its CLI."""
    modules = package_modules()
    clis = cli_modules(modules)
    assert {"keras_ganaug.metrics.generator", "keras_ganaug.study.cli"} <= clis
    importing = [f"{importer} imports the CLI {imported}"
                 for importer, targets in import_graph().items() for imported in sorted(targets & clis)
                 if not importer.endswith(".__main__")]
    assert importing == []


def test_modules_and_scripts_stay_small():
    long_modules = {name: n for name, path in package_modules().items()
                    if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long_modules == {}, (f"modules over {MAX_MODULE_LINES} lines (move a coherent part "
                                f"into a module of its own): {long_modules}")
    for script in ("train_gan.py", "train_classifier.py"):
        assert len((REPO / script).read_text().splitlines()) < MAX_SCRIPT_LINES, script


def test_console_scripts_live_in_the_package_and_nothing_installs_at_top_level():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert "py_modules" not in setup["options"]  # `import train_gan` would work machine-wide
    entries = [line.split("=") for line in
               setup["options.entry_points"]["console_scripts"].strip().splitlines()]
    assert {name.strip() for name, _ in entries} >= {
        "keras-ganaug-train-gan", "keras-ganaug-train-classifier", "keras-ganaug-demo",
        "keras-ganaug-study", "keras-ganaug-quality"}
    for _, target in entries:
        module, function = target.strip().split(":")
        assert module.startswith("keras_ganaug.")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("script, flag, owner", [
    ("keras_ganaug.classify.cli", "--model", ("keras_ganaug.classify.models", "MODELS")),
    ("keras_ganaug.classify.cli", "--augment", ("keras_ganaug.classify.augment", "AUGMENT_MODES")),
    ("keras_ganaug.classify.cli", "--synthetic-classes",
     ("keras_ganaug.classify.config", "SYNTHETIC_CLASSES")),
    ("keras_ganaug.classify.cli", "--resize", ("keras_ganaug.data.images", "RESIZE_MODES")),
    ("keras_ganaug.gans.cli", "--recipe", ("keras_ganaug.gans.recipes", "RECIPE_CHOICES")),
    ("keras_ganaug.gans.cli", "--upsample", ("keras_ganaug.gans.registry", "UPSAMPLE_KINDS")),
    ("keras_ganaug.gans.cli", "--d-norm", ("keras_ganaug.gans.registry", "D_NORMS")),
    ("keras_ganaug.gans.cli", "--g-fakes", ("keras_ganaug.gans.registry", "G_FAKES")),
    ("keras_ganaug.gans.cli", "--arch", ("keras_ganaug.gans.registry", "ARCHS")),
    ("keras_ganaug.gans.cli", "--loss", ("keras_ganaug.gans.registry", "ADVERSARIAL_LOSSES")),
])
def test_cli_choices_come_from_the_one_owner_of_each_list(script, flag, owner):
    parser = importlib.import_module(script).build_parser()
    action = next(a for a in parser._actions if flag in a.option_strings)
    assert tuple(action.choices) == tuple(getattr(importlib.import_module(owner[0]), owner[1]))


MAX_FUNCTION_LINES = 60  # about a screen: a function one can hold in one's head


def is_flag_table(func: ast.FunctionDef) -> bool:
    """A build_parser that only declares flags (exempt from MAX_FUNCTION_LINES: a table is read a
    row at a time): its statements are calls such as add_argument, assignments of a parser or a
    group, loops of such calls, and the return; no branch, no computation."""
    def declares(statement: ast.stmt) -> bool:
        if isinstance(statement, ast.Expr):
            return isinstance(statement.value, (ast.Call, ast.Constant))
        if isinstance(statement, ast.Assign):
            return isinstance(statement.value, ast.Call)
        if isinstance(statement, ast.For):
            return all(declares(s) for s in statement.body + statement.orelse)
        return isinstance(statement, ast.Return)

    return func.name == "build_parser" and all(declares(s) for s in func.body)


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of each function (methods and nested ones too) over MAX_FUNCTION_LINES."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not is_flag_table(node)]


def test_the_function_reader_exempts_only_a_table_of_flags():
    rows = "".join(f"    p.add_argument('--flag-{i}', type=int)\n" for i in range(MAX_FUNCTION_LINES))
    table = f"def build_parser():\n    p = make()\n{rows}    for o in options:\n        p.add(o)\n" \
            f"    return p\n"
    assert long_functions(table) == []
    branching = table.replace("    return p\n", "    if p:\n        p.strip()\n    return p\n")
    assert long_functions(branching) == [("build_parser", MAX_FUNCTION_LINES + 7)]
    assert long_functions(table.replace("build_parser", "run")) == [("run", MAX_FUNCTION_LINES + 5)]


def test_no_function_is_longer_than_a_screen():
    """Every function in the package fits in MAX_FUNCTION_LINES lines; a build_parser that is a
    table of flags (is_flag_table) may be longer."""
    offenders = [f"{name}.{function} ({lines} lines)"
                 for name, path in package_modules().items()
                 for function, lines in long_functions(path.read_text())]
    assert offenders == [], (f"functions over {MAX_FUNCTION_LINES} lines (split them into steps "
                             f"whose names say what they do): {', '.join(offenders)}")
