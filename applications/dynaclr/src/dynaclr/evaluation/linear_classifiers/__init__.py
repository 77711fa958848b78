"""Linear-classifier command-line tools on cell embeddings (``dynaclr train-linear-classifier`` …).

Modules: ``train_linear_classifier``, ``apply_linear_classifier``, ``dataset_discovery``,
``generate_train_config``, ``generate_prediction_scripts``; each exposes a click command ``main``.
Example configurations are in the ``configs`` folder next to this file.
"""
