"""The notebooks as the instructor makes them: ``build`` (``.ipynb`` from the text sources) and ``site`` (HTML)."""
