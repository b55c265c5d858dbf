"""Operations shared by the TUI and the CLI: validate input, create rows, describe the job to run."""
