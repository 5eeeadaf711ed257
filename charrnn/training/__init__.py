"""A run from plan to checkpoint: the plan, the loop and its step, batches, the checkpoint
and the rules of resuming, the run log and directories, fine-tuning, auto presets,
data-parallel processes and interruption."""
