// LatheNN: modules, layers, losses, optimisers, schedules and the training loop.
