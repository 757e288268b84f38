"""Plan stage: pure arithmetic from a TrainConfig and a target batch to a Plan, and pure LR
schedules as functions of training progress. Imports no torch."""
