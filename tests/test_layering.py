"""Layering, read from the source (every import, also those inside functions):

* ``telephony/``, ``asr/`` and ``recordings/`` never import ``hotline_api``;
* in ``hotline_api``, the database and model layers (``db``, ``models``, ``core``) never import a
  service, the API, the web console or the composition root;
* storage (encryption at rest) never imports review: the step that stores and then assigns is the
  pipeline's, above both;
* no import cycle between the packages ``telephony``, ``asr``, ``recordings`` and the layers of
  ``hotline_api`` (core, db, models, services, drafting, api, web, cli).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _modules(pkg: str) -> dict[str, set[str]]:
    out = {}
    for p in sorted((REPO / pkg).rglob("*.py")):
        mod = ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        out[mod] = _imports(p)
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("telephony", "asr", "recordings"):
        return parts[0]
    if parts[0] == "hotline_api" and len(parts) > 1:
        return "hotline_api." + parts[1] if parts[1] in ("core", "db", "models", "services", "drafting", "api",
                                                           "web", "cli", "migrations") else "hotline_api.root"
    return None


ALL = {m: i for pkg in ("telephony", "asr", "recordings", "hotline_api") for m, i in _modules(pkg).items()}


def test_the_parts_never_import_the_service():
    bad = [(m, i) for m, imps in ALL.items() if m.split(".")[0] in ("telephony", "asr", "recordings")
           for i in imps if i.split(".")[0] == "hotline_api"]
    assert bad == []


def test_the_database_layer_never_imports_a_service():
    upper = ("hotline_api.services", "hotline_api.api", "hotline_api.web", "hotline_api.cli", "hotline_api.wiring",
             "hotline_api.sip_pool", "hotline_api.sip_routing", "hotline_api.scheduler")
    bad = [(m, i) for m, imps in ALL.items() if _layer(m) in ("hotline_api.db", "hotline_api.models", "hotline_api.core")
           for i in imps if i.startswith(upper)]
    assert bad == []


def test_storage_never_imports_review():
    imps = ALL["hotline_api.services.storage"]
    assert [i for i in imps if i.startswith(("hotline_api.services.review", "hotline_api.services.pipeline"))] == []


def test_no_import_cycle_between_layers():
    edges: dict[str, set[str]] = {}
    for m, imps in ALL.items():
        a = _layer(m)
        for i in imps:
            b = _layer(i)
            if a and b and a != b and b != "hotline_api.migrations":
                edges.setdefault(a, set()).add(b)
    # the composition root and the CLI are on top; everything else must form a DAG
    top = {"hotline_api.root", "hotline_api.cli"}
    graph = {a: {b for b in bs if b not in top} for a, bs in edges.items() if a not in top}
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for x in sorted(graph.get(n, ())):
            visit(x)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert cycles == []
