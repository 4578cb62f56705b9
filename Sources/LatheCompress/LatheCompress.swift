// LatheCompress: quantization, pruning and distillation: model-level transforms and quantized layers.
