"""The built-in plugins of iasf-search (installed as ``iasf_search.plugins``).

Each module registers its components through the public ``iasf_register_*`` hooks, exactly as a
third-party plugin does; the core imports none of them directly.
"""
