"""What the models give the outside world: classifications of new images (`classify`),
the whole dataset's probabilities for export and review (`predictions`), the job that
embeds and scores what is missing (`scoring`), model files and the model list with
activation (`model_files`, `model_catalog`), their records (`records`), and the one object
the servicer calls for all of them (`model_outputs`)."""
