// LatheTrain: recipes, the training loop, checkpoints and metric logs.
