"""A simulated vLLM worker: the stand-in for a GPU engine where none exists. Its figures are a model's, never a
measurement of an inference engine; every run against it is labelled simulated."""
