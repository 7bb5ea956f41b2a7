"""What a search leaves behind and how to read it: per-trial records (:mod:`.records`) and files
(:mod:`.artifacts`), finding and rebuilding trials (:mod:`.access`), figures, the summary printed
after a search, the HTML report, export and retraining, and the dashboard."""
