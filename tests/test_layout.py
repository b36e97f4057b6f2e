"""The package's architecture as a test: the library never imports a study, a benchmark or the CLI, and
its packages import each other without cycles (ARCHITECTURE.md)."""

import ast
import pathlib

import andi_jax

ROOT = pathlib.Path(andi_jax.__file__).parent
DRIVERS = ("andi_jax.studies", "andi_jax.bench", "andi_jax.cli")


def _imports() -> dict[str, set[str]]:
  """Module -> the andi_jax modules it imports, at any depth of its code."""
  graph = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    graph[name] = {m for m in found if m.startswith("andi_jax.") and m.split(".")[1] != "runtime"} | (
      {"andi_jax.runtime"} & found
    )
  return graph


def _package(module: str) -> str:
  return ".".join(module.split(".")[:2])


def test_the_library_never_imports_a_driver():
  wrong = {
    (m, i)
    for m, deps in _imports().items()
    if not m.startswith(DRIVERS)
    for i in deps
    if i.startswith(DRIVERS)
  }
  assert not wrong


def test_no_cycle_between_packages():
  edges = {}
  for m, deps in _imports().items():
    edges.setdefault(_package(m), set()).update(_package(d) for d in deps if _package(d) != _package(m))
  state = {}

  def visit(p, path):
    if state.get(p) == "open":
      raise AssertionError(f"import cycle: {' -> '.join(path + [p])}")
    if state.get(p) != "done":
      state[p] = "open"
      for q in sorted(edges.get(p, ())):
        visit(q, path + [p])
      state[p] = "done"

  for p in sorted(edges):
    visit(p, [])
