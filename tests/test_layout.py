"""The layout a reader relies on: no import circles, docs links that resolve.

Imports are read from the source (``ast``), function-level ones included, so a
circle hidden behind a local import is found as well.
"""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxtransfer", "converters", "configs")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts as a.b
    where a.b is a module, else as a). A module's own parent packages are left
    out: Python imports them first whatever the module does."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and not (name + ".").startswith(target + "."):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_package(name: str) -> bool:
    return (REPO / name.replace(".", "/") / "__init__.py").is_file()


def _package_of(name: str) -> str:
    """The sub-package a module belongs to (jaxtransfer.grid, jaxtransfer.main...)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def test_the_walk_sees_the_imports():
    graph = _graph()
    assert "jaxtransfer.training.steps" in graph["jaxtransfer.training.engine"]
    assert graph["jaxtransfer.main"]  # the command line imports the grid


def test_no_module_imports_itself_through_others():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_no_circle_between_packages():
    packages: dict[str, set[str]] = {}
    for name, imports in _graph().items():
        source = _package_of(name)
        packages.setdefault(source, set()).update(
            _package_of(t) for t in imports if _package_of(t) != source
        )
    cycle = _cycle(packages)
    assert cycle is None, " -> ".join(cycle)


def test_the_library_does_not_reach_into_the_command_lines():
    """converters/ holds command lines over jaxtransfer, not code it needs."""
    for name, imports in _graph().items():
        if name.startswith("jaxtransfer"):
            assert not {t for t in imports if t.startswith("converters")}, name


DOC_FILES = sorted(
    [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    + [p for p in _modules().values()]
)


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        if match := re.match(r"#+ (.*)", line):
            words = re.sub(r"[^\w\- ]", "", match.group(1).lower())
            anchors.add(words.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_references_resolve(path):
    """Every `docs/<page>.md#section` named in code or docs exists."""
    text = path.read_text()
    for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text):
        target = REPO / "docs" / page
        assert target.is_file(), f"{path.name}: docs/{page} does not exist"
        if anchor and anchor != "section":
            assert anchor in _anchors(target), f"{path.name}: docs/{page}#{anchor}"


CONFIGS = sorted(
    p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__",)
)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_is_a_whole_config_for_the_main_job(name):
    """Each config file gives every field jaxtransfer.main reads (the defaults')."""
    from ml_collections import ConfigDict

    from configs import default

    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config = module.get_config()
    assert isinstance(config, ConfigDict)

    def keys(c, prefix=""):
        for key, value in c.items():
            yield prefix + key
            if isinstance(value, ConfigDict):
                yield from keys(value, f"{prefix}{key}.")

    assert set(keys(default.get_config())) <= set(keys(config))
