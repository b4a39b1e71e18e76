"""genrl: learn a generative copy of a Gymnasium environment and train SB3 agents inside it."""
