"""Weight-shared modules: candidate ops, choice blocks that hold every candidate and run the sampled one, skip
aggregation, width-sliced layers. Imports torch only; search spaces build their supernets and children from it.
"""
