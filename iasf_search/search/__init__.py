"""The search: a study's set-up (:mod:`~iasf_search.search.setup`), the loop that runs its trials
(:mod:`~iasf_search.search.study`), local worker processes (:mod:`~iasf_search.search.workers`), storage URLs
(:mod:`~iasf_search.search.storage`), stop signals (:mod:`~iasf_search.search.interrupts`), the architectures
queued before the sampler's (:mod:`~iasf_search.search.enqueue`, :mod:`~iasf_search.search.prescreen`).
"""
