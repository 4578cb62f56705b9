import Foundation
import LatheIO
import LatheTensor
import XCTest
import _LatheTestSupport

/// Reading tensors one at a time from a mapped safetensors file.
final class MappedSafeTensorsTests: XCTestCase {
    func testFloat32FromEveryFloatDTypeMatchesACopyThenConvert() throws {
        var rng = TestRNG(3)
        let values = Tensor(rng.floats(3 * 37, -4, 4), shape: [3, 37])
        // Every float dtype, and an int8 tensor of odd length (written last: the writer orders
        // by dtype size).
        let tensors: [String: Tensor] = ["a32": values, "b16": values.to(.bfloat16), "h16": values.to(.float16),
                                         "odd": Tensor([1, 2, 3], shape: [3]).to(.int8), "z16": values.to(.bfloat16)]
        let url = try temporaryDirectory().appendingPathComponent("t.safetensors")
        try SafeTensors.write(tensors, to: url)
        let file = try MappedSafeTensors(contentsOf: url)
        XCTAssertEqual(Set(file.tensorNames), Set(tensors.keys))
        for (name, t) in tensors {
            XCTAssertEqual(file.shape(of: name), t.shape)
            XCTAssertEqual(try file.tensor(named: name).dtype, t.dtype)
            XCTAssertEqual(try file.float32Tensor(named: name).scalars, t.to(.float32).scalars, name)
        }
        XCTAssertThrowsError(try file.float32Tensor(named: "nope")) { XCTAssertTrue("\($0)".contains("no tensor nope"), "\($0)") }
    }

    func testOddOffsetsConvertFromAnUnalignedStart() throws {
        let values: [Float] = [1.5, -2.25, 3e-3, 65504, -0.0, 7]
        let half = Tensor(values, shape: [6]).to(.float16), bf = Tensor(values, shape: [6]).to(.bfloat16)
        for source in [half, bf] {
            let bytes = source.withUnsafeRawBytes { [UInt8](repeating: 0, count: 1) + Array($0) }
            let converted = bytes.withUnsafeBytes { raw in
                Tensor(float32From: UnsafeRawBufferPointer(rebasing: raw[1...]), shape: [6], dtype: source.dtype)
            }
            XCTAssertEqual(converted.scalars, source.to(.float32).scalars)
        }
    }

    func testShardsWithTheSameTensorTwiceAreAnError() throws {
        let dir = try temporaryDirectory()
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        try SafeTensors.write(["x": Tensor([1, 2], shape: [2]), "y": Tensor([3], shape: [1])], to: a)
        try SafeTensors.write(["x": Tensor([1, 2], shape: [2])], to: b)
        XCTAssertThrowsError(try ShardedSafeTensors([a, b])) { XCTAssertTrue("\($0)".contains("tensor x is also in"), "\($0)") }
        let one = try ShardedSafeTensors([a])
        XCTAssertEqual(try one.float32Tensor(named: "y").scalars, [3])
        XCTAssertNil(one.shape(of: "z"))
        XCTAssertThrowsError(try MappedSafeTensors(contentsOf: dir.appendingPathComponent("missing.safetensors")))
    }
}
