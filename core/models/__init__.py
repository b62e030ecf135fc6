"""The models: the networks (``networks``), the registry that names them and their Grad-CAM layers
(``registry``), and model cards with sha256-checked weights (``card``)."""
