"""The applications behind the CLI: finetune, predict, evaluate, summary, convert."""
