"""Layering rules of PRODUCT.md section 1, checked on every file's imports."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TELEGRAM_FACING = {
    "bot",
    "handlers",
    "admin_module",
    "console",
    "sender",
    "services",
    "telegram_app",
    "real_time_monitor",
    "ict_80_alert_handler",
    "daily_reports",
}
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").split(".")[0])
    return names


def test_detectors_import_only_numpy_pandas_and_their_own_types():
    for path in sorted((ROOT / "ict_modules").glob("*.py")):
        foreign = imports(path) - STDLIB - {"numpy", "pandas", ".", "ict_modules", "__future__"}
        assert not foreign, f"{path.name} imports {foreign}"


def test_only_the_telegram_layer_imports_telegram():
    for path in sorted(ROOT.glob("*.py")):
        if path.stem not in TELEGRAM_FACING:
            assert "telegram" not in imports(path), f"{path.name} is a service and must not import telegram"
