"""Storage: the engine and unit of work, the models, and one repository module per aggregate."""
