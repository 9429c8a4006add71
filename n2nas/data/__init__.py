"""Data: WFDB / CinC / EHR readers, synthetic data, preprocessing ops, on-disk cache, windows, augmentation, splits.

May import n2nas.errors only: the bottom of the stack knows nothing of models, training or searches.
"""
