"""Training a registry model, for ``python -m core.train``: what a run starts from (``prepare``), the
epoch loop (``loop``) and what a finished run leaves, its weights and model card (``record``);
under ``torchrun``, each rank's DistributedDataParallel and what only rank 0 does (``distributed``).
Fine-tunes that share a start are averaged with it by ``python -m core.training.average``."""
