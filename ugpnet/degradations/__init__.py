"""The paper's degradations, deterministic from a seed.

- denoise: ``Poisson(k x)/k + N(0, sigma²)`` on [0, 1], clip, 8-bit (:mod:`.noise`);
- deblur: camera-shake motion kernels (Boracchi & Foi 2012 trajectories) from a stored bank,
  FFT convolution with reflect padding (:mod:`.motion`);
- sr: 8x MATLAB-compatible bicubic downsampling (:mod:`.resize`).

Per-image API :func:`degrade_image` (training, on the fly) and folder API :func:`degrade_folder`
(fixed val/test inputs, manifest written last) live in :mod:`.apply`.
"""
from .apply import (TASK_IDS, TASKS, degrade_folder, degrade_image, image_rng, output_name,
                    stable_hash, verify_folder)
from .motion import (DEFAULT_GENERATOR, bank_manifest_path, blur, blur_float, generate_kernel_bank,
                     kernel_size_for, load_kernel_bank, load_kernel_bank_with_manifest,
                     write_kernel_bank)
from .noise import add_noise, poisson_gaussian
from .resize import (bicubic_downsample, bicubic_upsample, bicubic_upsample_matrix, imresize,
                     resize_library_info, sr_input)

__all__ = [
    "TASKS", "TASK_IDS", "degrade_folder", "degrade_image", "image_rng", "output_name",
    "stable_hash", "verify_folder", "DEFAULT_GENERATOR", "bank_manifest_path", "blur",
    "blur_float", "generate_kernel_bank", "kernel_size_for", "load_kernel_bank",
    "load_kernel_bank_with_manifest", "write_kernel_bank", "add_noise", "poisson_gaussian",
    "bicubic_downsample", "bicubic_upsample", "bicubic_upsample_matrix", "imresize", "resize_library_info", "sr_input",
]
