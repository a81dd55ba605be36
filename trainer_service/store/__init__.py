"""The labelled set: the trainer's SQLite file and the thread it is used on
(`database`), the append-only annotation log (`labels`), which answer is in force when
several people answered an item (`answers`), and what an annotation request must satisfy
before it is written (`validation`). Nothing here knows models, features or the wire."""
