"""`python -m llm_energy` runs the CLI."""

from llm_energy.cli import main

main()
