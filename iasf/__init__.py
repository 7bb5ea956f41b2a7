"""``from iasf import IASF``: the import path of the seed paper (000 §4.1) for :class:`iasf_search.IASF`."""

from iasf_search.iasf_module import IASF

__all__ = ["IASF"]
