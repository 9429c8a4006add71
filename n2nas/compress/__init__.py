"""Smaller models: scheduled magnitude pruning with compact saved weights (prune), int8 quantization-aware and
post-training quantization (quantize). May import n2nas.errors only; model folders and retrain use it.
"""
