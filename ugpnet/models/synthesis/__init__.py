"""UGPNet synthesis module: StyleGAN2 G/D, encoder E (F-encoder + map2style), weight loaders.

Weight loading: :mod:`.loading` (format detection, ``load_stylegan2``, ``load_official_synmodule``),
:mod:`.keymaps_stylegan2` (official-name tables), :mod:`.nvidia_pickle` (NVIDIA ``.pkl`` files).
"""

from ...errors import CheckpointError
from .encoder import FEncoder, Map2Style, SynthesisEncoder, default_encoder_channels
from .loading import LoadReport, load_official_synmodule, load_stylegan2
from .nvidia_pickle import read_nvidia_pickle
from .stylegan2 import Discriminator, Generator, default_channels
from .synthesis import SynthesisModule, build_synthesis_module

__all__ = [
    "Generator",
    "Discriminator",
    "default_channels",
    "FEncoder",
    "Map2Style",
    "SynthesisEncoder",
    "default_encoder_channels",
    "SynthesisModule",
    "build_synthesis_module",
    "load_stylegan2",
    "load_official_synmodule",
    "read_nvidia_pickle",
    "LoadReport",
    "CheckpointError",
]
