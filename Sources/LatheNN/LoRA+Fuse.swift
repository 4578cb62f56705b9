import LatheTensor

extension LoRALinear {
    /// The weight of the fused layer `[out, in]`, in float32 from the base's float weight (its
    /// dequantised weight for a quantized base, never another copy of the model):
    ///
    /// - LoRA: `W' = W + scaling · B A`;
    /// - DoRA: `W' = (m / ||W + scaling · B A||_row) ⊙ (W + scaling · B A)` (each output row scaled
    ///   by its magnitude over its norm, as PEFT's and mlx-lm's fuse compute it).
    ///
    /// The bias is the base's, unchanged. Without dropout the fused layer computes what this
    /// layer computes, up to float rounding.
    public var fusedWeight: Tensor {
        noGrad {
            let merged = linearBase.denseWeight + deltaWeight
            guard let m = loraMagnitudeVector else { return merged.contiguous() }
            let norm = merged.square().sum(dim: 1).sqrt()
            return (merged * (m.value.detached() / norm).unsqueezed(1)).contiguous()
        }
    }

    /// A plain float `Linear` with ``fusedWeight`` and the base's bias (frozen, as the base was).
    public func fused() -> Linear {
        let layer = Linear(weight: fusedWeight, bias: linearBase.denseBias)
        layer.freeze()
        return layer
    }
}

extension Module {
    /// Replaces every ``LoRALinear`` of the tree with its ``LoRALinear/fused()`` layer (adapters
    /// on quantized layers give float layers: quantize the model again to write it quantized).
    /// - Returns: the fused paths, in module order.
    @discardableResult
    public func fuseLoRA() throws(ModuleSurgeryError) -> [String] {
        let layers = loraLayers
        for (path, layer) in layers { try setModule(layer.fused(), at: path) }
        return layers.map(\.0)
    }
}
