"""How good the model is, honestly: the audit reserve and its draws (`audit`), the
stratified Bayesian estimate of F1, precision and recall with its interval (`estimate`),
the live score and learning curve of the models in use (`evaluation`), and the forecast
of the labels still needed to reach the target (`forecast`). No label counted here ever
trained or chose the model it scores."""
