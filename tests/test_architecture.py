"""Layering rules of PRODUCT.md section 1 and the house rules of issue 11, checked on every file's imports.

The product is the root modules and the layer packages; tests, bench and scripts are not. Imports are read with
``ast`` from every line of a module, function-local imports included.
"""

import ast
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("market", "chat", "store", "engine", "tracking", "research", "ict_modules")
NOT_PRODUCT = {"tests", "bench", "scripts", "docs", "data"}
TELEGRAM_FACING_ROOT = {"bot", "admin_module", "real_time_monitor", "ict_80_alert_handler", "daily_reports"}
BELOW_CHAT = ("market", "store", "engine")  # layers that must not import the chat layer
MAX_LINES = 600
MAX_ROOT_FILES = 14
STDLIB = set(sys.stdlib_module_names)


def product_files() -> list[Path]:
    files = sorted(ROOT.glob("*.py"))
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imported_names(path: Path) -> set[str]:
    """Every dotted name ``path`` imports, relative imports resolved (``from pkg import mod`` gives both
    ``pkg`` and ``pkg.mod``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = ".".join(part for part in (anchor, node.module) if part)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path)}


def import_graph() -> dict[str, set[str]]:
    """Product module -> the product modules it imports (a name resolves to its longest product-module prefix)."""
    modules = {module_name(path): path for path in product_files()}

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(imported) for imported in imported_names(path)} - {None, name}
        # ``from chat import handlers`` names the package too; the edge that matters is to the module
        graph[name] = {t for t in targets if not any(o != t and o.startswith(t + ".") for o in targets)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_telegram_facing(path: Path) -> bool:
    name = module_name(path)
    return name.split(".")[0] == "chat" or name in TELEGRAM_FACING_ROOT


def test_every_root_package_is_classified():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    unknown = packages - set(PACKAGES) - NOT_PRODUCT
    assert not unknown, f"new package(s) {unknown}: add them to PACKAGES (product) or NOT_PRODUCT"


def test_detectors_import_only_numpy_pandas_and_their_own_types():
    for path in sorted((ROOT / "ict_modules").glob("*.py")):
        foreign = top_levels(path) - STDLIB - {"numpy", "pandas", "ict_modules", "__future__", ""}
        assert not foreign, f"{path.name} imports {foreign}"


def test_only_the_telegram_layer_imports_telegram():
    for path in product_files():
        if not is_telegram_facing(path):
            assert "telegram" not in top_levels(path), f"{module_name(path)} is a service and must not import telegram"


def test_market_store_and_engine_do_not_import_the_chat_layer():
    for package in BELOW_CHAT:
        for path in sorted((ROOT / package).rglob("*.py")):
            assert "chat" not in top_levels(path), f"{module_name(path)} must not import chat/"


def test_no_import_cycle_among_product_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():  # the rule above must be able to fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def dynamic_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.split(".")[0] == "importlib" and a.name != "importlib.metadata"
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "importlib":
            if node.module != "importlib.metadata":
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append("__import__()")
    return found


def test_no_dynamic_imports_in_product_code():
    offenders = {module_name(p): d for p in product_files() if (d := dynamic_imports(p))}
    assert not offenders, f"dynamic imports (use static imports): {offenders}"


def test_no_product_module_over_600_lines():
    sizes = {
        module_name(p): n for p in product_files() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not sizes, f"modules over {MAX_LINES} lines (split by responsibility): {sizes}"


def test_at_most_14_python_files_at_the_root():
    root_files = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root_files) <= MAX_ROOT_FILES, root_files


def test_the_dynamic_import_finder_finds_them(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib.metadata\nimport importlib\nx = __import__('os')\n", encoding="utf-8")
    assert dynamic_imports(sample) == ["importlib", "__import__()"]
