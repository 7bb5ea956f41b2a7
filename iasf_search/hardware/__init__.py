"""Cost prediction: which kernels a model launches (:mod:`.kernels`), what they cost on a hardware
profile (:mod:`.profiles`, the roofline model), fitting a profile of this machine
(:mod:`.calibration`), and timing calls on a device (:mod:`.timing`)."""
