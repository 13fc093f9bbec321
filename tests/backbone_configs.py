"""Backbone configurations shared by the backbone and restoration/fusion tests."""

GOPRO_NAFNET = dict(width=32, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28],
                    dec_blk_nums=[1, 1, 1, 1])
SIDD_NAFNET = dict(width=32, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8],
                   dec_blk_nums=[2, 2, 2, 2])
TINY = {
    "nafnet": dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1]),
    "hinet": dict(wf=8),
    "unet": dict(base_channels=8, depth=3),
    "rrdbnet": dict(num_feat=16, num_block=2, num_grow_ch=8, scale=8),
}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
