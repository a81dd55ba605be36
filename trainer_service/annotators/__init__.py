"""Trust in the annotators' answers: known-answer checks and per-annotator agreement
(`checks`), rechecks of a person's own earlier items (`consistency`), and likely label
errors found by confident learning and sent to a second annotator (`label_errors`)."""
