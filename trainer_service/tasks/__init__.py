"""The questions one trainer answers over its dataset: what a task is and which ones are
valid (`spec`), the declarative tasks file (`file`), the definitions kept in the trainer's
database with where each came from and whether it is archived (`registry`), the set of
tasks running in the process, started, looked up by name and archived at run time
(`running`), and how a task's refusal reads on the wire (`refusals`). Each task has its
own labels, models and status; what a task's parts are and how they share the dataset and
its features is wired above this room."""
