"""Export stage: converted checkpoint, ONNX for inference, and the rewritten training config."""
