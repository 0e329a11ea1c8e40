"""The folders are the data flow: the import graph between subpackages, read with ``ast``.

camera -> vision -> embeddings -> language -> plan -> robot: these tests hold the layout to the
dependency rules in the README (Layout), so a shortcut import cannot creep back in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ivl_embodied"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``ivl_embodied.*`` module a file imports, at the top or inside functions."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in out if m == "ivl_embodied" or m.startswith("ivl_embodied.")}


def _subpackage(module: str) -> str | None:
    """``ivl_embodied.robot.skills`` -> ``robot``; top-level modules (cli, demo, ...) -> their name."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    name = parts[1]
    return name if (PKG / name).is_dir() or (PKG / f"{name}.py").is_file() else None


def subpackage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = _subpackage(_module_name(path))
        if src is None:
            continue
        deps = {_subpackage(m) for m in _imports(path)} - {None, src}
        graph.setdefault(src, set()).update(deps)
    return graph


GRAPH = subpackage_graph()


def test_the_graph_sees_the_layout():
    for name in ("vision", "embeddings", "language", "checkpoints", "runtime", "export", "plan", "perception",
                 "robot", "sim", "transport", "nodes", "train"):
        assert name in GRAPH, f"ivl_embodied/{name}/ is missing"
    assert "embeddings" in GRAPH["vision"] and "embeddings" in GRAPH["language"]
    assert "plan" in GRAPH["robot"] and "perception" in GRAPH["robot"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(n: str, stack: list[str]) -> list[str] | None:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m] if m in stack else stack + [n, m]
            if m not in state and (found := visit(m, stack + [m])):
                return found
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n, [n])):
            return found
    return None


def test_no_import_cycles_between_subpackages():
    assert _cycle(GRAPH) is None, f"import cycle: {' -> '.join(_cycle(GRAPH))}"


def test_cycle_finder_finds_a_cycle():  # the check above can fail
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("low", ["plan", "perception", "robot"])
def test_plan_perception_robot_import_no_sim_train_or_nodes(low):
    assert not GRAPH[low] & {"sim", "train", "nodes"}, f"{low}/ imports {sorted(GRAPH[low])}"


def test_plan_imports_nothing_outside_itself():
    assert GRAPH["plan"] == set(), f"plan/ imports {sorted(GRAPH['plan'])}"


def test_vision_and_language_do_not_import_each_other():
    assert "language" not in GRAPH["vision"] and "vision" not in GRAPH["language"]


def test_library_is_ros_free_and_nodes_sit_on_top():
    for name, deps in GRAPH.items():
        if name not in ("nodes", "demo", "replay", "launcher", "cli"):
            assert "nodes" not in deps, f"{name} imports nodes/ (nodes are thin adapters on top)"
    for path in PKG.rglob("*.py"):
        if {"nodes", "transport"} & set(path.relative_to(PKG).parts):  # the middleware layers
            continue
        assert not any(m.startswith("rclpy") for m in _raw_imports(path)), f"{path} imports rclpy"


def _raw_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add(node.module or "")
    return out


def test_the_executor_side_nodes_import_nothing_from_the_simulator():
    """The executor drives the arm its robot file names, through topics: not our simulator's arm."""
    for name in ("executor_node.py", "topic_robot.py", "task_action.py"):
        sim = {m for m in _imports(PKG / "nodes" / name) if _subpackage(m) == "sim"}
        assert not sim, f"nodes/{name} imports {sorted(sim)}"
