"""Image-quality metrics with a fixed, recorded protocol: PSNR/SSIM (scikit-image), LPIPS v0.1
(``lpips``), FID (``pytorch-fid``), all with offline pretrained weights (see :mod:`.weights`).

Public API::

    psnr(gt_u8, pred_u8) -> float                 ssim(gt_u8, pred_u8) -> float
    LPIPSMetric(net="alex", device="cpu")         get_lpips_model(net, device) -> lpips.LPIPS
    vgg16_features_state() -> OrderedDict         build_vgg16_features(upto=None, device="cpu")
    fid_from_dirs(pred_dir, gt_dir | npz | (mu, sigma), device="cpu") -> float
    evaluate_dirs(pred_dir, gt_dir, metrics=..., lpips_net="alex", fid_ref=None, device="cpu",
                  progress=True) -> dict
    evaluate_arrays([(name, gt_u8, pred_u8), ...], metrics=("psnr", "ssim", "lpips")) -> dict
    write_evaluation(path, result), read_evaluation(path)
"""
from .evaluate import (  # noqa: F401
    ALL_METRICS,
    evaluate_arrays,
    evaluate_dirs,
    pair_files,
    psnr,
    read_evaluation,
    ssim,
    write_evaluation,
)
from .fid import fid_from_arrays, fid_from_dirs, get_fid_model  # noqa: F401
from .lpips_metric import LPIPSMetric, get_lpips_model  # noqa: F401
from .weights import (  # noqa: F401
    alexnet_features_state,
    build_vgg16_features,
    cache_dir,
    vgg16_features_state,
)

__all__ = [
    "ALL_METRICS", "LPIPSMetric", "alexnet_features_state", "build_vgg16_features", "cache_dir",
    "evaluate_arrays", "evaluate_dirs", "fid_from_arrays", "fid_from_dirs", "get_fid_model",
    "get_lpips_model", "pair_files", "psnr", "read_evaluation", "ssim", "vgg16_features_state",
    "write_evaluation",
]
