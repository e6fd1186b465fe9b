"""trainer_adapter: everything torch. Loader, rays, Nerfacto, trainer, metrics, rendering.

Import-light on purpose: importing the package imports neither torch nor the submodules, so
``eyeful_tools`` and the CLI can import names from here without paying for torch.
"""

__all__: list[str] = []
