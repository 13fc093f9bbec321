"""Architecture facts of the pretrained ImageNet feature networks (torchvision ``features`` layout).

``*_CONVS``: ``features`` index of every conv -> its OIHW weight shape. ``VGG_CFG``: torchvision's
VGG configurations (numbers: conv output channels, ``"M"``: max-pool). ``VGG_LAYERS``:
``relu{block}_{k}`` -> index of that ReLU in ``features``, e.g. ``VGG_LAYERS["vgg19"]["relu3_4"] ==
17`` (``features[:18]``) and ``VGG_LAYERS["vgg16"]["relu3_3"] == 15``.
"""
from __future__ import annotations

from collections import OrderedDict

from ..errors import ConfigError

ALEXNET_CONVS = OrderedDict([
    (0, (64, 3, 11, 11)), (3, (192, 64, 5, 5)), (6, (384, 192, 3, 3)),
    (8, (256, 384, 3, 3)), (10, (256, 256, 3, 3)),
])

VGG_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg_convs(arch: str) -> "OrderedDict[int, tuple]":
    """``features`` index -> conv weight shape (OIHW) of ``vgg16`` / ``vgg19``."""
    out, idx, cin = OrderedDict(), 0, 3
    for v in VGG_CFG[arch]:
        if v == "M":
            idx += 1
        else:
            out[idx] = (v, cin, 3, 3)
            cin, idx = v, idx + 2  # conv + ReLU
    return out


VGG16_CONVS = vgg_convs("vgg16")
VGG19_CONVS = vgg_convs("vgg19")


def features_shapes(convs: "OrderedDict[int, tuple]") -> "OrderedDict[str, tuple]":
    """State-dict keys and shapes of a ``features`` module with these convs (``'0.weight'``, ...)."""
    out: "OrderedDict[str, tuple]" = OrderedDict()
    for idx, shape in convs.items():
        out[f"{idx}.weight"] = shape
        out[f"{idx}.bias"] = (shape[0],)
    return out


def _layer_table(cfg: list) -> "OrderedDict[str, int]":
    """``relu{block}_{k}`` -> index of that ReLU in torchvision's ``features``."""
    out: "OrderedDict[str, int]" = OrderedDict()
    idx, block, k = 0, 1, 0
    for v in cfg:
        if v == "M":
            idx += 1
            block, k = block + 1, 0
        else:
            k += 1
            out[f"relu{block}_{k}"] = idx + 1  # conv at idx, its ReLU at idx + 1
            idx += 2
    return out


VGG_LAYERS = {arch: _layer_table(cfg) for arch, cfg in VGG_CFG.items()}


def map_layer(layer: str, arch: str) -> str:
    """Name of the layer of ``arch`` at the same place as ``layer`` (a VGG16 or VGG19 name).

    Same block; ``k`` is clipped to the number of convs in that block, so the last ReLU of a
    VGG19 block (``relu3_4``) maps to the last ReLU of the VGG16 block (``relu3_3``)."""
    try:
        block_s, k_s = layer[len("relu"):].split("_")
        block, k = int(block_s), int(k_s)
        assert layer.startswith("relu") and 1 <= block <= 5 and k >= 1
    except (ValueError, AssertionError):
        raise ConfigError(f"unknown VGG layer '{layer}'; use a name like relu3_4 "
                          f"(known: {', '.join(VGG_LAYERS['vgg19'])})") from None

    def n_in_block(a: str) -> int:
        return sum(1 for name in VGG_LAYERS[a] if name.startswith(f"relu{block}_"))

    if arch not in VGG_LAYERS:
        raise ConfigError(f"unknown VGG '{arch}'; use vgg16 or vgg19")
    if k > n_in_block("vgg19"):
        raise ConfigError(f"unknown VGG layer '{layer}': block {block} has {n_in_block('vgg19')} "
                          f"convs in VGG19 ({n_in_block('vgg16')} in VGG16)")
    return f"relu{block}_{min(k, n_in_block(arch))}"
