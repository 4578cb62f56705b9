import Foundation
import LatheTensor

/// Data files shipped inside LatheData's resource bundle (see `Resources/README.md`).
enum BundledResource {
    static func url(_ name: String) throws -> URL {
        if let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Resources") {
            return url
        }
        if let url = Bundle.module.url(forResource: name, withExtension: nil) { return url }
        throw DataError.missingResource(name: name)
    }
}

/// The UCI optical-recognition 8x8 handwritten digits (1,797 images, as shipped with
/// scikit-learn), bundled with Lathe: no download needed.
public enum Digits {
    /// Features `[1797, 1, 8, 8]` float32 in `[0, 1]` (pixel counts 0...16 divided by 16),
    /// labels int64 `0...9`, `classes` 10.
    public static func load() throws -> TensorDataset {
        let url = try BundledResource.url("digits.csv.gz")
        let raw = try CSV.loadNumeric(url, labelColumn: -1, hasHeader: false)
        guard raw.features.shape == [raw.count, 64] else {
            throw DataError.malformed(path: url.path, location: "line 1", reason: "expected 64 pixel columns and a label")
        }
        let x = raw.features.reshaped([raw.count, 1, 8, 8]) * Tensor(Float(1) / 16)
        return TensorDataset(features: x, labels: raw.labels, classes: 10)
    }
}
