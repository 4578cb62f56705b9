import Foundation

/// Rotary position embeddings (RoPE) applied in place to rows of heads, with the frequencies
/// of a config (base, scaling) and either pair layout.
public struct Rotary: Sendable {
    public let headDim: Int
    public let layout: RopeLayout
    /// One inverse frequency per pair, as float32 (Hugging Face computes them in float32).
    public let inverseFrequencies: [Float]

    public init(headDim: Int, base: Double, scaling: RopeScaling? = nil, layout: RopeLayout) {
        precondition(headDim % 2 == 0, "Rotary: head dim \(headDim) must be even")
        self.headDim = headDim
        self.layout = layout
        var inv = (0..<headDim / 2).map { i in Float(1 / pow(base, Double(Float(2 * i) / Float(headDim)))) }
        switch scaling {
        case nil: break
        case .linear(let factor)?: inv = inv.map { $0 / Float(factor) }
        case let .llama3(factor, low, high, original)?:
            let lowWavelength = original / low, highWavelength = original / high
            inv = inv.map { f in
                let wavelength = 2 * Double.pi / Double(f)
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return Float(Double(f) / factor) }
                let smooth = (original / wavelength - low) / (high - low)
                return Float((1 - smooth) * Double(f) / factor + smooth * Double(f))
            }
        }
        inverseFrequencies = inv
    }

    /// Rotates `rows` rows of `heads` heads each (row stride `heads * headDim`) in place; row r is
    /// at position `start + r`.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, start: Int) {
        let half = headDim / 2
        var cosTable = [Float](repeating: 0, count: half), sinTable = cosTable
        for r in 0..<rows {
            let position = Float(start + r)
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                cosTable[i] = cos(angle)
                sinTable[i] = sin(angle)
            }
            for h in 0..<heads {
                let v = x + (r * heads + h) * headDim
                switch layout {
                case .halves:
                    for i in 0..<half {
                        let a = v[i], b = v[i + half]
                        v[i] = a * cosTable[i] - b * sinTable[i]
                        v[i + half] = b * cosTable[i] + a * sinTable[i]
                    }
                case .pairs:
                    for i in 0..<half {
                        let a = v[2 * i], b = v[2 * i + 1]
                        v[2 * i] = a * cosTable[i] - b * sinTable[i]
                        v[2 * i + 1] = b * cosTable[i] + a * sinTable[i]
                    }
                }
            }
        }
    }
}
