"""docs/architecture.md's table of src/nin/ is true to the code: every module is listed, and
each imports (at the top or inside a function) only modules listed above it: no import circles."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "nin"


def _table_order() -> list[str]:
    """Module names in the order of the table's first column (data/ stands for the package)."""
    order = []
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            order += [n.removesuffix(".py").rstrip("/") for n in re.findall(r"`([^`]+)`", first)]
    return order


def _imports(path: Path) -> set[str]:
    """The nin modules a file imports, by their first name below nin (data.x -> data)."""
    rel = path.relative_to(PKG)
    inside_data = rel.parts[0] == "data"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        # `from .x` names nin's x in src/nin/, data's x in src/nin/data/ (there `from ..x` is nin's)
        if isinstance(node, ast.ImportFrom) and node.level == (2 if inside_data else 1):
            names = [node.module] if node.module else [a.name for a in node.names]
            found |= {n.split(".")[0] for n in names}
    return found


def test_every_module_is_in_the_table_and_imports_only_those_above_it():
    order = _table_order()
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"} | {"data"}
    assert modules - set(order) == set(), f"not in docs/architecture.md: {modules - set(order)}"
    rank = {m: i for i, m in enumerate(order)}
    wrong = []
    for path in [*PKG.glob("*.py"), *(PKG / "data").glob("*.py")]:
        me = "data" if path.parent.name == "data" else path.stem
        if me in ("__init__", "__main__"):
            continue
        for dep in _imports(path) - {"__init__", me}:
            if dep in rank and rank[dep] >= rank[me]:
                wrong.append(f"{path.relative_to(PKG)} imports {dep}, listed below it")
    assert not wrong, "\n".join(wrong)
