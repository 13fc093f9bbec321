"""ugpnet-bench: reproducible benchmarking and ablation suite for UGPNet."""
__version__ = "0.1.0"
