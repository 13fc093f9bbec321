"""Image-quality metrics with a fixed, recorded protocol: PSNR/SSIM (scikit-image), LPIPS v0.1
(``lpips``), FID (``pytorch-fid``), all with offline pretrained weights (from :mod:`ugpnet.pretrained`).

Public API::

    psnr(gt_u8, pred_u8) -> float                 ssim(gt_u8, pred_u8) -> float
    LPIPSMetric(net="alex", device="cpu")         get_lpips_model(net, device) -> lpips.LPIPS
    fid_from_dirs(pred_dir, gt_dir | npz | (mu, sigma), device="cpu") -> float
    evaluate_dirs(pred_dir, gt_dir, metrics=..., lpips_net="alex", fid_ref=None, device="cpu",
                  progress=True) -> dict
    inspect_dirs(pred_dir, gt_dir) -> FolderPairs      score_dirs(folder_pairs, ...) -> dict
        (evaluate_dirs in two steps: every folder's headers first, then the metrics)
    evaluate_arrays([(name, gt_u8, pred_u8), ...], metrics=("psnr", "ssim", "lpips")) -> dict
    write_evaluation(path, result), read_evaluation(path)
    evaluation_bundle(method, task, {split: {output: result}}), read_bundle_record(path, split, output)
"""
from .evaluate import (  # noqa: F401
    ALL_METRICS,
    evaluate_arrays,
    evaluate_dirs,
    evaluation_bundle,
    inspect_dirs,
    pair_files,
    psnr,
    read_bundle_record,
    read_evaluation,
    score_dirs,
    ssim,
    write_evaluation,
)
from .fid import fid_from_arrays, fid_from_dirs, get_fid_model  # noqa: F401
from .lpips_metric import LPIPSMetric, get_lpips_model  # noqa: F401

__all__ = [
    "ALL_METRICS", "LPIPSMetric", "evaluate_arrays", "evaluate_dirs", "evaluation_bundle",
    "fid_from_arrays", "fid_from_dirs", "get_fid_model", "get_lpips_model", "inspect_dirs",
    "pair_files", "psnr", "read_bundle_record", "read_evaluation", "score_dirs", "ssim",
    "write_evaluation",
]
