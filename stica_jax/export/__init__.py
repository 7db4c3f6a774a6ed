"""PyTorch interop: torchvision-compatible safetensors export and import (`stica_jax.export.torch`).

Importing this package needs neither torch nor torchvision; `torch_modules` (the PyTorch
rebuild of an exported model) does.
"""
