"""The method contract: what the host may name, what plugins may import, the kind registry.

Layering (one-way dependencies, no cycles) is checked in tests/test_layers.py."""
import ast
import re
import sys
from pathlib import Path

import pytest

from ugpnet.config import load_params_file, resolve
from ugpnet.errors import ConfigError
from ugpnet.methods import METHOD_KINDS, MethodKind, Stage, get_kind, register_kind

REPO = Path(__file__).resolve().parents[1]

# the public API a method package (baselines/<name>/, plugins) may import from
PUBLIC = {"ugpnet.methods", "ugpnet.training", "ugpnet.training.gan", "ugpnet.losses",
          "ugpnet.models.build", "ugpnet.models.blocks", "ugpnet.models.backbones",
          "ugpnet.models.synthesis", "ugpnet.checkpoints", "ugpnet.errors", "ugpnet.io",
          "ugpnet.registry",
          # StyleGAN2 building blocks and key maps, for methods built on StyleGAN2 (GFP-GAN, GPEN,
          # VQFR's critic): one implementation of the native ops, not one per baseline
          "ugpnet.models.synthesis.ops", "ugpnet.models.synthesis.stylegan2",
          "ugpnet.models.synthesis.keymaps_stylegan2", "ugpnet.models.synthesis.loading",
          # the one store of pretrained weights (and the metric networks built from it), so a loss
          # term reads the same exact offline weights as the metrics
          "ugpnet.pretrained", "ugpnet.pretrained.vgg", "ugpnet.pretrained.archs",
          "ugpnet.metrics",
          # the frozen VGG feature extractor (UGPNet's contextual loss, the baselines' perceptual
          # terms: one place for layer names, pre-ReLU convs and the VGG19/VGG16 weights), the
          # backbones' blocks and official key maps, for methods built on a backbone (GLEAN's
          # RRDB extractor, ESRGAN's RRDBNet)
          "ugpnet.losses.vgg", "ugpnet.models.backbones.rrdbnet", "ugpnet.models.keymaps"}


def _imports(path: Path, package: str):
    """Absolute module names imported by the file at ``path`` (module of ``package``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else [])), node
            else:
                yield node.module or "", node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node


def _module_of(path: Path, root: Path) -> tuple[str, str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


# words that would mean the host knows a particular kind, method or stage
NAMES = re.compile(r"\b(restoration|synthesis|fusion|x_reg|x_syn|x_hat|STAGE_BEFORE|nafnet|"
                   r"rrdbnet|hinet|prior_flag)\b|[\"']ugpnet[\"']|[\"']regression[\"']|kind ==")


@pytest.mark.parametrize("path", sorted(
    [REPO / "Snakefile"] + list((REPO / "workflow").rglob("*.smk")) +
    list((REPO / "ugpnet" / "commands").glob("*.py")) + [REPO / "ugpnet" / "plan.py"]),
    ids=lambda p: str(p.relative_to(REPO)))
def test_host_names_no_kind_or_stage(path):
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if NAMES.search(line) and not line.lstrip().startswith("#")]
    assert not hits, "\n".join(hits)


def test_method_packages_use_only_the_public_api():
    files = list((REPO / "baselines").rglob("*.py")) + list((REPO / "tests" / "plugins").rglob("*.py"))
    assert any("toy_generative" in str(f) for f in files)
    bad = []
    for path in files:
        for target, node in _imports(path, "plugin"):  # relative imports stay in the plugin
            if not target.startswith("ugpnet"):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            if target not in PUBLIC or any(n.startswith("_") for n in names):
                bad.append(f"{path.relative_to(REPO)}: {target} {names}")
    assert not bad, "\n".join(bad)


def test_builtin_kinds_declare_the_contract():
    reg, ugp = get_kind("regression"), get_kind("ugpnet")
    assert (reg.family, reg.outputs) == ("regression", ("x_hat",))
    assert (ugp.family, ugp.outputs) == ("generative", ("x_hat", "x_reg", "x_syn"))
    assert [s.name for s in ugp.stages({}, "deblur")] == ["restoration", "synthesis", "fusion"]
    assert [s.select for s in ugp.stages({}, "deblur")] == ["psnr", "final", "psnr"]  # official
    assert [s.name for s in reg.stages({}, "deblur")] == ["train"]


def test_unknown_kind_says_how_to_add_one(repo_root):
    raw = load_params_file(repo_root / "params.yaml")
    with pytest.raises(ConfigError, match=r"unknown method kind 'nosuchkind'.*baselines/nosuchkind"):
        resolve(raw, "tiny", ["methods.x.kind=nosuchkind", "methods.x.tasks=[sr]"])


def test_kind_schema_errors_name_the_key_path(repo_root):
    raw = load_params_file(repo_root / "params.yaml")
    with pytest.raises(ConfigError, match=r"methods\.nafnet\.train\.lr"):
        resolve(raw, "tiny", ["methods.nafnet.train.lr=-1"])
    with pytest.raises(ConfigError, match=r"methods\.ugpnet\.stages\.fusion.*'lrr'"):
        resolve(raw, "tiny", ["methods.ugpnet.stages.fusion.lrr=1"])
    with pytest.raises(ConfigError, match=r"table1\.methods: 'ghost'"):
        resolve(raw, "tiny", ["table1.methods=[ghost]"])


def test_a_baseline_package_is_discovered_by_its_kind_name(tmp_path, monkeypatch):
    import baselines

    pkg = tmp_path / "pkgs" / "demo_kind_xyz"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from ugpnet.methods import MethodKind, Stage, register_kind\n"
        "@register_kind('demo_kind_xyz')\n"
        "class Demo(MethodKind):\n"
        "    schema = {'type': 'object'}\n"
        "    def stages(self, mcfg, task):\n"
        "        return (Stage('only'),)\n")
    monkeypatch.setattr(baselines, "__path__", list(baselines.__path__) + [str(tmp_path / "pkgs")])
    try:
        kind = get_kind("demo_kind_xyz")
        assert [s.name for s in kind.stages({}, "sr")] == ["only"]
        assert sys.modules["baselines.demo_kind_xyz"]
    finally:
        METHOD_KINDS._items.pop("demo_kind_xyz", None)
        sys.modules.pop("baselines.demo_kind_xyz", None)


def test_register_kind_checks_the_declaration():
    with pytest.raises(ValueError, match="family"):
        @register_kind("bad_family_xyz")
        class Bad(MethodKind):
            family = "magic"
    with pytest.raises(ValueError, match="select"):
        Stage("s", select="fid")
    assert "bad_family_xyz" not in METHOD_KINDS
