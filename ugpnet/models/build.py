"""Build models from a resolved config: the only place where params.yaml meets constructors.

Method kinds call these with the resolved config; models themselves take plain arguments.
"""
from __future__ import annotations

from typing import Mapping

from ..errors import ConfigError

GENERATOR_KEYS = ("size", "style_dim", "n_mlp", "channel_multiplier", "channel_max", "basecode_size")
# what a priors.<name> entry holds besides its architecture
PRIOR_SOURCE_KEYS = ("checkpoint", "checkpoint_sha256", "pretrain")


def prior_architecture(cfg: Mapping, name: str) -> dict:
    """The architecture of prior ``priors.<name>`` (its entry without checkpoint and pretraining
    recipe): what a kind builds G and D from, and puts in a stage's identity (the prior's file
    is the stage's input, so its content is in the identity too)."""
    priors = cfg["priors"]
    if name not in priors:
        raise ConfigError(f"no prior named '{name}': params.yaml defines priors {sorted(priors)}")
    p = priors[name]
    return {k: p[k] for k in p if k not in PRIOR_SOURCE_KEYS}


def generator_kwargs(sg: Mapping) -> dict:
    return {k: sg[k] for k in GENERATOR_KEYS if k in sg}


def build_generator(sg: Mapping):
    from .synthesis.stylegan2 import Generator

    return Generator(**generator_kwargs(sg))


def build_discriminator(sg: Mapping):
    from .synthesis.stylegan2 import Discriminator

    return Discriminator(size=sg["size"], channel_multiplier=sg["d_channel_multiplier"],
                         channel_max=sg.get("channel_max", 512))


def build_synthesis(sg: Mapping, randomize_noise: bool = False, map2style: str = "shared"):
    """E and G of prior architecture ``sg``; ``map2style``: ``shared`` (UGPNet) | ``per_latent``
    (an ablation, :func:`map2style_design`)."""
    from .synthesis.synthesis import build_synthesis_module

    return build_synthesis_module(**generator_kwargs(sg),
                                  encoder_channel_max=sg.get("encoder_channel_max"),
                                  noise="random" if randomize_noise else "const",
                                  map2style=map2style)


def backbone_name(mcfg: Mapping, task: str) -> str:
    """The backbone of a method entry: ``backbone: name`` or ``backbone: {task: name}``."""
    b = mcfg["backbone"]
    if isinstance(b, Mapping):
        if task not in b:
            raise ConfigError(f"the method's backbone has no entry for task '{task}' "
                              f"(backbone: {dict(b)})")
        return b[task]
    return b


def build_backbone(cfg: Mapping, name: str, task: str):
    """Backbone ``name`` with the constructor arguments ``backbones.<name>.<task>``."""
    from .backbones import BACKBONES

    cls = BACKBONES.get(name)
    per_task = cfg["backbones"].get(name)
    if per_task is None or task not in per_task:
        raise ConfigError(f"params.yaml has no constructor arguments for backbone '{name}' and "
                          f"task '{task}': add backbones.{name}.{task}: {{...}}")
    try:
        return cls(**per_task[task])
    except TypeError as e:
        raise ConfigError(f"backbones.{name}.{task} does not fit {cls.__name__}: {e}") from None


def restoration_skip(mcfg: Mapping, task: str) -> str:
    """The restoration module's global skip for ``task`` (an option beyond the paper, see
    :mod:`.options`): ``restoration_skip: value`` or ``{task: value}``; ``none`` when absent."""
    skip = mcfg.get("restoration_skip", "none")
    if isinstance(skip, Mapping):
        skip = skip.get(task, "none")
    return skip


# the ablations of a methods.<m> entry (ugpnet.models.options.ABLATIONS): key -> official value
def restoration_head(mcfg: Mapping) -> str:
    """``methods.<m>.restoration_head``: ``se_mg`` (official) | ``none`` (Table 3 (a))."""
    return mcfg.get("restoration_head", "se_mg")


def fusion_input(mcfg: Mapping) -> str:
    """``methods.<m>.fusion_input``: ``features`` (official, Eq. 1) | ``images`` (Table 3 (b))."""
    return mcfg.get("fusion_input", "features")


def map2style_design(mcfg: Mapping) -> str:
    """``methods.<m>.map2style``: ``shared`` (UGPNet) | ``per_latent`` (pSp)."""
    return mcfg.get("map2style", "shared")


def check_restoration_head(mcfg: Mapping, method: str, task: str) -> None:
    """A head without R_mg takes no restoration skip: ConfigError naming both keys."""
    from .restoration import RESTORATION_HEADS

    head, skip = restoration_head(mcfg), restoration_skip(mcfg, task)
    cls = RESTORATION_HEADS.get(head)
    if skip not in cls.skips:
        raise ConfigError(
            f"methods.{method}.restoration_head is '{head}' but methods.{method}."
            f"restoration_skip for task '{task}' is '{skip}': that head accepts restoration_skip "
            f"{' | '.join(cls.skips)} (without R_mg, x_reg already is the backbone's output); "
            f"set restoration_skip.{task}: none or restoration_head: se_mg")


def build_restoration(cfg: Mapping, method: str, task: str):
    from .restoration import RestorationModule

    m = cfg["methods"][method]
    name = backbone_name(m, task)
    skip = restoration_skip(m, task)
    head = restoration_head(m)
    backbone = build_backbone(cfg, name, task)
    if getattr(backbone, "kind", None) == "residual":
        check_restoration_head(m, method, task)
    try:
        return RestorationModule(backbone, skip=skip, head=head)
    except ValueError as e:
        if skip == "none":
            raise
        raise ConfigError(f"methods.{method}.restoration_skip for task '{task}' is '{skip}': "
                          f"{e}") from None


def build_ugpnet(cfg: Mapping, method: str, task: str):
    """UGPNet for (method, task) with fresh weights (load checkpoints afterwards)."""
    from .fusion import build_fusion
    from .ugpnet import UGPNet

    m = cfg["methods"][method]
    name = m.get("prior", "stylegan2")
    sg = prior_architecture(cfg, name)
    if cfg["data"]["resolution"] != sg["size"]:
        raise ConfigError(f"priors.{name}.size ({sg['size']}) must equal data.resolution "
                          f"({cfg['data']['resolution']}): G renders the restored image's size")
    restoration = build_restoration(cfg, method, task)
    synthesis = build_synthesis(sg, m.get("randomize_noise", False), map2style_design(m))
    fusion = build_fusion(fusion_input(m), syn_channels=synthesis.generator.feature_channels,
                          reg_channels=restoration.feature_channels,
                          channels=restoration.feature_channels,
                          num_blocks=m["fusion"]["num_blocks"],
                          xreg_skip=m["fusion"].get("xreg_skip", False))
    return UGPNet(restoration, synthesis, fusion)
