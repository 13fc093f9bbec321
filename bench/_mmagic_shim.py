"""Import mmagic's GLEAN and StyleGAN2 files without mmagic's package ``__init__`` chain and
without mmcv's compiled ops (for bench/official_glean.py; never imported by the project).

Needs ``mmengine`` and ``mmcv-lite`` (pure Python) on ``sys.path``: bench/official_glean.py runs
this in a subprocess with ``PYTHONPATH=/tmp/offpkgs-glean`` (``.venv/bin/pip install --target
/tmp/offpkgs-glean mmengine mmcv-lite``). What is replaced:

- ``mmcv.ops``: an empty package over mmcv's own ``ops`` folder, so only the three files GLEAN
  reads are imported (``upfirdn2d``, ``fused_bias_leakyrelu``, ``conv2d_gradfix``); their compiled
  extension is never loaded (``ext_loader.load_ext`` returns a placeholder) and, on CPU, mmcv's
  own reference paths run (``_upfirdn2d_ref``, ``bias_leakyrelu_ref``, ``F.conv2d``).
- ``mmagic``, ``mmagic.models``, ... : empty packages over the checkout's folders, so importing
  ``glean_styleganv2.py`` does not import every editor (diffusers, transformers, ...);
  ``mmagic.registry.MODELS`` is a minimal registry (register by class name, build from a dict);
  ``mmagic.structures.DataSample`` (type hints of model_utils.py) a placeholder; ``mmagic.utils``
  an empty package over its folder (its ``__init__`` reads ``np.bool8``, gone in NumPy 2).
- ``..stylegan3.stylegan3_modules.MappingNetwork`` and ``.ada`` (conditional / ADA parts of the
  StyleGAN2 discriminator, unused by GLEAN): placeholders.
Nothing in the official files is edited.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path


class _Registry:
    def __init__(self):
        self.classes = {}

    def register_module(self, name=None, module=None, force=False):
        def deco(cls):
            self.classes[name or cls.__name__] = cls
            return cls
        return deco(module) if module is not None else deco

    def build(self, cfg, *args, **kwargs):
        cfg = dict(cfg)
        return self.classes[cfg.pop("type")](**cfg)


def _package(name: str, path: Path | None = None):
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)] if path is not None else []
    sys.modules[name] = mod
    if "." in name:
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, mod)
    return mod


def _export(pkg: str, mod, names=None):
    p = sys.modules[pkg]
    for n in names or [n for n in dir(mod) if not n.startswith("_")]:
        setattr(p, n, getattr(mod, n))


def import_official(root: Path):
    """``(glean_module, stylegan2_discriminator_module, stylegan2_generator_module)`` of the
    mmagic checkout at ``root``."""
    root = Path(root)
    import mmcv
    import mmcv.utils.ext_loader as ext_loader

    ext_loader.load_ext = lambda name, funcs: types.SimpleNamespace()
    _package("mmcv.ops", Path(mmcv.__file__).parent / "ops")
    for f in ("conv2d_gradfix", "upfirdn2d", "fused_bias_leakyrelu"):
        _export("mmcv.ops", importlib.import_module(f"mmcv.ops.{f}"))

    m = root / "mmagic"
    _package("mmagic", m)
    reg = _package("mmagic.registry")
    reg.MODELS = _Registry()
    _package("mmagic.structures").DataSample = object  # type hints only
    _package("mmagic.utils", m / "utils")  # no __init__ (it reads np.bool8)
    _package("mmagic.models", m / "models")
    _package("mmagic.models.archs", m / "models" / "archs")
    _package("mmagic.models.utils", m / "models" / "utils")
    _package("mmagic.models.editors", m / "models" / "editors")
    ed = m / "models" / "editors"
    for sub in ("pggan", "stylegan1", "stylegan2", "stylegan3", "esrgan", "glean"):
        _package(f"mmagic.models.editors.{sub}", ed / sub)
    _package("mmagic.models.editors.stylegan2.ada", ed / "stylegan2" / "ada")

    _export("mmagic.models.utils", importlib.import_module("mmagic.models.utils.model_utils"))
    _export("mmagic.models.archs", importlib.import_module("mmagic.models.archs.all_gather_layer"))
    _export("mmagic.models.archs", importlib.import_module("mmagic.models.archs.downsample"))
    _export("mmagic.models.archs", importlib.import_module("mmagic.models.archs.upsample"))
    _export("mmagic.models.editors.pggan",
            importlib.import_module("mmagic.models.editors.pggan.pggan_modules"))
    _export("mmagic.models.editors.stylegan1",
            importlib.import_module("mmagic.models.editors.stylegan1.stylegan1_modules"))
    _export("mmagic.models.editors.stylegan1",
            importlib.import_module("mmagic.models.editors.stylegan1.stylegan_utils"))
    s3 = types.ModuleType("mmagic.models.editors.stylegan3.stylegan3_modules")
    s3.MappingNetwork = object
    sys.modules[s3.__name__] = s3
    ada_aug = types.ModuleType("mmagic.models.editors.stylegan2.ada.augment")
    ada_aug.AugmentPipe = object
    ada_misc = types.ModuleType("mmagic.models.editors.stylegan2.ada.misc")
    ada_misc.constant = None
    sys.modules[ada_aug.__name__], sys.modules[ada_misc.__name__] = ada_aug, ada_misc
    gen = importlib.import_module("mmagic.models.editors.stylegan2.stylegan2_generator")
    disc = importlib.import_module("mmagic.models.editors.stylegan2.stylegan2_discriminator")
    glean = importlib.import_module("mmagic.models.editors.glean.glean_styleganv2")
    return glean, disc, gen
