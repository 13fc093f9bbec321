"""Dependencies point one way: errors <- io <- checkpoints <- pretrained <- metrics/losses/models,
data and degradations at the bottom; no import cycles between modules at import time.

Read from the source (``ast``), so the test is fast and imports nothing.
"""
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ugpnet"

# what each bottom/middle package may import from ugpnet ("ugpnet" = the package's __version__)
ALLOWED = {
    "ugpnet.errors": set(),
    "ugpnet.io": {"ugpnet.errors"},
    "ugpnet.registry": {"ugpnet.errors"},
    "ugpnet.checkpoints": {"ugpnet.errors", "ugpnet.io"},
    "ugpnet.data": {"ugpnet", "ugpnet.errors", "ugpnet.io"},
    "ugpnet.degradations": {"ugpnet.errors", "ugpnet.io"},
    "ugpnet.pretrained": {"ugpnet.checkpoints", "ugpnet.errors", "ugpnet.io"},
    "ugpnet.metrics": {"ugpnet", "ugpnet.checkpoints", "ugpnet.errors", "ugpnet.io", "ugpnet.pretrained"},
    # losses reuse the LPIPS model of the metrics (one LPIPS, same protocol)
    "ugpnet.losses": {"ugpnet.checkpoints", "ugpnet.errors", "ugpnet.io", "ugpnet.metrics",
                      "ugpnet.pretrained", "ugpnet.registry"},
    # models: RRDBNet's bicubic residual uses the SR degradation's own bicubic kernel
    "ugpnet.models": {"ugpnet.checkpoints", "ugpnet.degradations", "ugpnet.errors", "ugpnet.io",
                      "ugpnet.pretrained", "ugpnet.registry"},
}
# the statistics of per-image values (bootstrap intervals, paired tests: scipy): a leaf
ALLOWED["ugpnet.stats"] = set()
# what made a file (code version, content digests): beside io, used from training upwards
ALLOWED["ugpnet.provenance"] = {"ugpnet"}
# the paper's published numbers (a data file and its reader): a leaf beside errors
ALLOWED["ugpnet.published"] = {"ugpnet.errors"}
# Markdown tables as HTML pages (what snakemake --report shows): a leaf, used by the commands
ALLOWED["ugpnet.table_html"] = set()
# the figures' drawing (matplotlib, seaborn): reads images, writes atomically; drawn by commands
ALLOWED["ugpnet.figures"] = {"ugpnet.errors", "ugpnet.io"}
# the layers above: training <- methods (kinds) <- plan/restore/tables <- config <- commands/cli
_BELOW_TRAINING = set().union(*ALLOWED.values()) | set(ALLOWED)
ALLOWED["ugpnet.training"] = _BELOW_TRAINING - {"ugpnet"} | {"ugpnet"}
ALLOWED["ugpnet.methods"] = ALLOWED["ugpnet.training"] | {"ugpnet.training"}
for _top in ("ugpnet.plan", "ugpnet.restore", "ugpnet.tables"):
    ALLOWED[_top] = ALLOWED["ugpnet.methods"] | {"ugpnet.methods"}
ALLOWED["ugpnet.config"] = ALLOWED["ugpnet.plan"] | {"ugpnet.plan", "ugpnet.restore",
                                                     "ugpnet.tables"}
# timing of every registered method (reads the resolved config's plugins): beside commands
ALLOWED["ugpnet.bench"] = ALLOWED["ugpnet.config"] | {"ugpnet.config"}
ALLOWED["ugpnet.commands"] = ALLOWED["ugpnet.config"] | {"ugpnet.config", "ugpnet.bench",
                                                         "ugpnet.figures", "ugpnet.published",
                                                         "ugpnet.table_html"}
ALLOWED["ugpnet.cli"] = ALLOWED["ugpnet.commands"] | {"ugpnet.commands"}
KNOWN: set = set()  # known upward edges (none)
KNOWN_CYCLES: list = []  # known cycles (none)


def _modules():
    """(dotted name, is a package, parsed tree) of every module of ugpnet."""
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), is_pkg, ast.parse(p.read_text(encoding="utf-8"))


def _is_module(dotted):
    path = ROOT.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(name, is_pkg, tree, top_level_only):
    """Dotted ugpnet modules ``name`` imports (``from .pkg import sub`` yields ``pkg.sub``)."""
    pkg = name if is_pkg else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                yield sub if _is_module(sub) else target
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name


def _group(mod):
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def test_dependencies_point_one_way():
    bad = []
    for name, is_pkg, tree in _modules():
        group = _group(name)
        assert group in ALLOWED or group in ("ugpnet", "ugpnet.__main__"), f"{group}: give it a layer"
        if group not in ALLOWED:
            continue
        for target in _imports(name, is_pkg, tree, top_level_only=False):
            if not target.startswith("ugpnet") or _group(target) == group:
                continue
            if _group(target) not in ALLOWED[group] and (name, _group(target)) not in KNOWN:
                bad.append(f"{name} imports {target}")
    assert not bad, "upward/sideways imports:\n" + "\n".join(bad)


def test_no_module_level_import_cycles():
    graph = defaultdict(set)
    names = set()
    for name, is_pkg, tree in _modules():
        names.add(name)
        graph[name].update(t for t in _imports(name, is_pkg, tree, top_level_only=True)
                           if t.startswith("ugpnet"))
    # an import of a.b.c that names a function (from .x import f) resolves to the module a.b.x
    graph = {m: {t if t in names else t.rsplit(".", 1)[0] for t in ts} & names for m, ts in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if t == m or (m.startswith(t + ".")):  # a submodule importing its own package
                continue
            if state.get(t) == "open":
                cycle = stack[stack.index(t):]
                if not any(set(cycle) <= known for known in KNOWN_CYCLES):
                    cycles.append(" -> ".join(cycle + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
