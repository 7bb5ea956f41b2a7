"""One trial: the Optuna objective (:mod:`~iasf_search.trial.objective`) and what it measures besides
accuracy: costs and constraints (:mod:`~iasf_search.trial.cost_measurement`), representation metrics
(:mod:`~iasf_search.trial.representations`), cross-validation folds (:mod:`~iasf_search.trial.cross_validation`).
"""
