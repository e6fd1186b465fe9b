"""Nerfacto in plain PyTorch: encodings, fields, samplers, renderer, losses, camera optimizer.

tiny-cuda-nn is used for the hash grid only when it imports (CUDA); nothing else needs it.
"""
