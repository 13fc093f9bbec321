"""The official UGPNet synthesis-stage augmentation (``data_augmentation.py`` +
``train_synmodule.py``), as a pure function of the iteration.

Per iteration ONE geometric transform, chosen by the iteration index cycling through
``cycle`` (official: scale, translate, rotate for ``idx % 3`` = 0, 1, 2), with the same
parameters for the whole batch and for every tensor it is given (x_reg and gt alike), by
``torchvision.transforms.functional.affine`` with its default nearest interpolation, zero fill,
then clamped to [0, 1]. Ranges (official): scale uniform in [7/8, 9/8]; translation integer
pixels in [-128, 129] x [-50, 51] at 512 px (Python ``randint(-r, r + 1)`` is inclusive, so the
official range is one pixel wider on the positive side; kept), scaled with the resolution;
rotation integer degrees in [-5, 5].

The draws come from ``numpy.random.default_rng([seed, iteration])``, not a running generator,
so a resumed run augments exactly as an uninterrupted one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

OPS = ("scale", "translate", "rotate")


class CycleAugment:
    def __init__(self, cycle: Sequence[str], scale: Sequence[float],
                 translate_px_at_512: Sequence[int], rotate_deg: int, resolution: int,
                 seed: int = 0):
        bad = [op for op in cycle if op not in OPS]
        if bad or not cycle:
            raise ValueError(f"augment cycle must list some of {OPS}, got {list(cycle)}")
        self.cycle = tuple(cycle)
        self.scale = (float(scale[0]), float(scale[1]))
        self.translate = tuple(int(round(t * resolution / 512)) for t in translate_px_at_512)
        self.rotate = int(rotate_deg)
        self.seed = int(seed)

    def params(self, it: int) -> tuple[str, dict]:
        """The transform of iteration ``it``: its name and ``TF.affine`` arguments."""
        rng = np.random.default_rng([self.seed, int(it)])
        op = self.cycle[int(it) % len(self.cycle)]
        args = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0]}
        if op == "scale":
            args["scale"] = float(rng.uniform(*self.scale))
        elif op == "translate":
            tx, ty = self.translate
            args["translate"] = [int(rng.integers(-tx, tx + 2)), int(rng.integers(-ty, ty + 2))]
        else:
            args["angle"] = float(rng.integers(-self.rotate, self.rotate + 1))
        return op, args

    @staticmethod
    def apply(x: torch.Tensor, args: dict) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        out = TF.affine(x, interpolation=InterpolationMode.NEAREST, fill=0.0, **args)
        return out.clamp(0.0, 1.0)

    def __call__(self, it: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, args = self.params(it)
        return tuple(self.apply(t, args) for t in tensors)
