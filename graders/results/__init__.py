"""The score model (``scores``) and its readers and writers: pytest's report in, Gradescope, score files and class reports out."""
